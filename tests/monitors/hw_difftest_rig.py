"""A difftest runner for the hw monitor: a program of the soft CPU's
differential harness (ringvisor.difftest) run as guest kernel code in VMX
non-root operation, under nested paging or shadow page tables."""
from __future__ import annotations

from types import SimpleNamespace

from ringvisor.cpu import SoftEngine
from ringvisor.difftest.runners import PORT, _PortRecorder, load
from ringvisor.difftest.world import Outcome, base_image, read_outcome, start_state
from ringvisor.errors import GuestCrashed
from ringvisor.exits import Halt, Shutdown
from ringvisor.machine.bus import MmioBus, PortBus
from ringvisor.machine.memory import GuestMemory
from ringvisor.monitors.hw.monitor import HwMonitor

RAM = 16 << 20


class _NoInterrupts:
    def pending(self) -> bool:
        return False


class HwRunner:
    def __init__(self, paging: bool = False, mmu: str = "ept"):
        self.paging, self.mmu = paging, mmu
        self.memory = GuestMemory(RAM)
        self.image = bytes(base_image(paging))

    def run(self, case, program) -> Outcome:
        ports = PortBus()
        recorder = _PortRecorder()
        ports.register(PORT, 1, recorder, "difftest")
        engine = SoftEngine(self.memory, ports, MmioBus())
        machine = SimpleNamespace(memory=self.memory, ports=ports, pic=_NoInterrupts())
        try:
            load(self.memory, self.image, case, program)
            mon = self.monitor = HwMonitor(machine, engine, self.mmu)
            mon.set_state(start_state(case.cpl, case.eflags, case.regs, self.paging))
            engine.slice = 20_000
            end = None
            for _ in range(50):
                try:
                    e = mon.run()
                except GuestCrashed as crashed:
                    end = str(crashed).splitlines()[0]
                    break
                if isinstance(e, (Halt, Shutdown)):
                    end = type(e).__name__
                    break
            if recorder.writes == 1:
                return read_outcome(mon.get_state(), self.memory, case.cpl, program.end_eip)
            return Outcome("no end", detail=f"hw run ended with {end} after {recorder.writes} port writes")
        finally:
            engine.close()

    def close(self) -> None:
        self.memory.close()
