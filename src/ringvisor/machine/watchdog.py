"""Getting the vCPU thread's attention from another thread.

A guest may spin or sleep forever (cli; hlt), and the user may quit with
Ctrl-A x while the vCPU thread is inside the engine. The watchdog thread asks
the engine to stop (KVM's immediate_exit) and sends SIGUSR1 to the vCPU
thread so that a blocking KVM_RUN returns at once with EINTR.
"""
from __future__ import annotations

import signal
import threading
import time


def _ignore(signum, frame):
    pass


class Watchdog:
    def __init__(self, engine, timeout: float | None, progress, period: float = 0.5):
        self.engine, self.timeout, self.progress, self.period = engine, timeout, progress, period
        self.reason: str | None = None        # why the vCPU was last kicked
        self._thread_id = threading.get_ident()
        self._can_signal = threading.current_thread() is threading.main_thread()
        self._old_handler = signal.signal(signal.SIGUSR1, _ignore) if self._can_signal else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ringvisor-watchdog", daemon=True)
        self.started = time.monotonic()

    def start(self) -> "Watchdog":
        self._thread.start()
        return self

    def kick(self, reason: str) -> None:
        self.reason = reason
        request = getattr(self.engine, "request_stop", None)
        if request:
            request()
        if self._can_signal:
            signal.pthread_kill(self._thread_id, signal.SIGUSR1)

    def _watch(self) -> None:
        # Wake at the next idle check or at the timeout, whichever is first:
        # a --timeout shorter than the period must still end a short run.
        last = self.progress()
        next_check = time.monotonic() + self.period
        deadline = None if self.timeout is None else self.started + self.timeout
        while True:
            wake = next_check if deadline is None else min(next_check, deadline)
            if self._stop.wait(max(0.0, wake - time.monotonic())):
                return
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self.kick("timeout")
                deadline = now + self.period     # again a period later if the guest goes on
                next_check = now + self.period
                continue
            if now >= next_check:
                progress = self.progress()
                if progress == last:
                    self.kick("idle")      # no exit for a whole period: is it stuck?
                last = progress
                next_check = now + self.period

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        if self._can_signal:
            signal.signal(signal.SIGUSR1, self._old_handler or signal.SIG_DFL)
