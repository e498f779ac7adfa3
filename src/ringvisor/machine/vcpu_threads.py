"""The application processors of an engine whose vCPUs run themselves (the
kvm engine: each vCPU blocks in KVM_RUN, which releases the GIL), one host
thread each; the bootstrap processor stays on the machine's own thread.

Every exit an AP's thread sees is dispatched by the machine under its device
lock, so devices see one access at a time. The first stop or crash on any AP
is kept and the bootstrap processor's thread is kicked to raise it there.
Stopping is QEMU's way: the `stopping` flag, then KVM's immediate_exit, then
SIGUSR1 to the thread (installed by the watchdog) so that a KVM_RUN blocked
in a halted or not yet started vCPU returns with EINTR.
"""
from __future__ import annotations

import signal
import threading
from types import SimpleNamespace

from ringvisor import exits as X


class VcpuThreads:
    def __init__(self, machine, vcpus):
        self.machine, self.vcpus = machine, vcpus
        self.stopping = False
        self.outcome: BaseException | None = None    # the first AP's stop or crash
        self.threads = [threading.Thread(target=self._loop, args=(v,), name=f"ringvisor-cpu{v.index}",
                                         daemon=True) for v in vcpus]

    def start(self) -> "VcpuThreads":
        for thread in self.threads:
            thread.start()
        return self

    def _loop(self, vcpu) -> None:
        machine = self.machine
        reporting = SimpleNamespace(engine=vcpu, index=vcpu.index)
        try:
            while not self.stopping:
                exit = vcpu.run()
                if exit.__class__ is X.Interrupted:
                    continue
                with machine.device_lock:
                    machine.reporting_cpu = reporting
                    try:
                        machine.dispatch(exit)
                    finally:
                        machine.reporting_cpu = None
        except BaseException as e:     # the guest's exit (GuestStopped) or a crash report
            if not self.stopping:
                if self.outcome is None:
                    self.outcome = e
                machine.watchdog.kick("cpu")

    def stop(self) -> None:
        self.stopping = True
        can_signal = signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, None)
        for vcpu, thread in zip(self.vcpus, self.threads):
            vcpu.request_stop()
            if can_signal and thread.is_alive():
                signal.pthread_kill(thread.ident, signal.SIGUSR1)
        for thread in self.threads:
            thread.join(timeout=2)
