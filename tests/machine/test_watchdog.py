"""The watchdog's timing, on a fake clock (no sleeping): issue 15's rough edge
6, a --timeout shorter than the watchdog's period must still stop the guest
at the timeout, not at the next period."""
from __future__ import annotations

import signal
import threading

from ringvisor.machine import watchdog as wd


class FakeClock:
    """time.monotonic and Event.wait for the watchdog thread: waiting
    advances the clock instead of sleeping."""

    def __init__(self):
        self.now = 100.0
        self.waits: list[float] = []

    def monotonic(self):
        return self.now


class Engine:
    def __init__(self, clock, watchdog_box, stop_after):
        self.clock, self.box, self.kicks, self.stop_after = clock, watchdog_box, [], stop_after

    def request_stop(self):
        self.kicks.append((round(self.clock.now - 100.0, 6), self.box[0].reason))
        if len(self.kicks) >= self.stop_after:
            self.box[0]._stop.set()


def run_watchdog(monkeypatch, timeout, period=0.5, progress=None, kicks=1):
    clock = FakeClock()
    monkeypatch.setattr(wd.time, "monotonic", clock.monotonic)
    box = []
    engine = Engine(clock, box, kicks)
    counter = iter(range(10**6))
    dog = wd.Watchdog(engine, timeout, progress or (lambda: next(counter)), period)
    box.append(dog)
    if dog._can_signal:                           # no SIGUSR1 to the test runner
        signal.signal(signal.SIGUSR1, dog._old_handler or signal.SIG_DFL)
        dog._can_signal = False
    stop = threading.Event()

    def fake_wait(seconds):
        if stop.is_set():
            return True
        clock.waits.append(round(seconds, 6))
        clock.now += seconds
        if len(clock.waits) > 100:                # a runaway loop is a failure, not a hang
            stop.set()
        return stop.is_set()
    monkeypatch.setattr(stop, "wait", fake_wait)
    dog._stop = stop
    dog._watch()
    return engine.kicks, clock.waits


def test_a_timeout_below_the_period_fires_at_the_timeout(monkeypatch):
    kicks, waits = run_watchdog(monkeypatch, timeout=0.1)
    assert kicks == [(0.1, "timeout")]
    assert waits == [0.1]


def test_a_timeout_kick_repeats_a_period_later_not_in_a_busy_loop(monkeypatch):
    kicks, waits = run_watchdog(monkeypatch, timeout=0.1, kicks=3)
    assert kicks == [(0.1, "timeout"), (0.6, "timeout"), (1.1, "timeout")]


def test_idle_checks_keep_their_period(monkeypatch):
    kicks, waits = run_watchdog(monkeypatch, timeout=None, progress=lambda: 7, kicks=2)
    assert kicks == [(0.5, "idle"), (1.0, "idle")]
    assert waits == [0.5, 0.5]


def test_a_long_timeout_still_checks_for_idleness_each_period(monkeypatch):
    kicks, waits = run_watchdog(monkeypatch, timeout=1.2, progress=lambda: 7, kicks=3)
    assert kicks == [(0.5, "idle"), (1.0, "idle"), (1.2, "timeout")]
