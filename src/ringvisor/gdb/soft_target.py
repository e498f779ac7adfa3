"""The soft engine as a gdb target, under every technique that runs on it.

The machine's vCPU loop runs the guest as it would without gdb; the CPU's
debug unit (cpu/debug.py) stops it at guest instruction boundaries with a
`DebugStop`, which leaves `Machine.run()` between two instructions. Under a
monitor the registers are the monitor's view of the guest (its `get_state`),
guest boundaries are where the monitor says (`debug_eip`), and registers are
set through the monitor (`debug_set_registers`: general registers, EIP,
status flags).
"""
from __future__ import annotations

import time

from ringvisor.cpu.debug import DebugUnit, flat_eip
from ringvisor.cpu_state import CpuState
from ringvisor.errors import GuestCrashed
from ringvisor.exits import DebugStop
from ringvisor.gdb import selectors
from ringvisor.gdb.linear import LinearMemory
from ringvisor.gdb.target import (BreakpointHit, Crashed, Exited, Interrupted, Stepped, Stop,
                                  TargetError, WatchKind, Watchpoint, WatchpointHit)

SEGMENTS = CpuState.SEGMENTS


class SoftTarget:
    hardware_slots = None            # breakpoints and watchpoints are exact, and unlimited

    def __init__(self, machine, technique: str):
        self.machine = machine
        self.technique = technique
        self.engine = machine.engine                  # the CPU itself, or the monitor on it
        self.cpu = machine.platform.engine
        self.monitored = self.engine is not self.cpu
        self.unit = DebugUnit(self.cpu, getattr(self.engine, "debug_eip", flat_eip))
        self.cpu.debug = self.unit
        self.memory = LinearMemory(machine.memory, self.read_registers, self._written)
        self.watchpoints: tuple[Watchpoint, ...] = ()
        self.result = None                            # the RunResult once the guest ended
        self.crash: GuestCrashed | None = None

    # --- registers and memory ----------------------------------------------------------------
    def read_registers(self) -> CpuState:
        return self.engine.get_state().copy()

    def write_registers(self, state: CpuState) -> None:
        if self.monitored:
            return self._write_through_monitor(state)
        self.cpu.set_state(selectors.reloaded(self.engine.get_state(), state))

    def _write_through_monitor(self, state: CpuState) -> None:
        from ringvisor.monitors.common.debugview import STATUS_FLAGS, WRITABLE
        old = self.read_registers()
        for name in ("eflags", "cr0", "cr2", "cr3", "cr4", *SEGMENTS, "gdt", "idt", "ldt", "tr"):
            a, b = getattr(state, name), getattr(old, name)
            if name == "eflags":
                a, b = a & ~STATUS_FLAGS, b & ~STATUS_FLAGS
            if a != b:
                raise TargetError(f"under --technique {self.technique} gdb may set the general "
                                  f"registers, EIP and the status flags only ({name} is the "
                                  "monitor's to virtualize)")
        if any(getattr(state, n) != getattr(old, n) for n in WRITABLE) or state.eflags != old.eflags:
            self.engine.debug_set_registers(state)

    def read_memory(self, address: int, length: int) -> bytes:
        return self.memory.read(address, length)

    def write_memory(self, address: int, data: bytes) -> None:
        self.memory.write(address, data)

    def _written(self, physical: int, length: int) -> None:
        """gdb patched guest memory: drop compiled and translated code there."""
        self.cpu.code_written(physical, length)
        self.cpu.dev_epoch += 1
        guest_written = getattr(self.engine, "_guest_written", None)
        if guest_written is not None:
            guest_written(physical, length)           # bt's translations, traced page tables

    # --- running --------------------------------------------------------------------------------
    def resume(self, step: bool) -> Stop:
        before, retired = self.read_registers(), self.unit.guest_retired
        while True:
            self.unit.resume(step)
            try:
                self.result = self.machine.run()
            except DebugStop as stop:
                if stop.kind == "step" and self.unit.guest_retired == retired and \
                        self.read_registers() == before:
                    continue          # the monitor's own work (a hidden page fault): not a step
                return self._stop(stop)
            except GuestCrashed as crash:
                self.crash = crash
                return Crashed(str(crash).splitlines()[0])
            finally:
                self.unit.step = False
            return Exited(self.result.status)

    def _stop(self, stop: DebugStop) -> Stop:
        if stop.kind == "breakpoint":
            return BreakpointHit(stop.address)
        if stop.kind == "step":
            return Stepped()
        if stop.kind == "watch":
            return WatchpointHit(stop.address, self._watch_kind(stop))
        return Interrupted()

    def _watch_kind(self, stop: DebugStop) -> WatchKind:
        wanted = WatchKind.WRITE if stop.access == "write" else WatchKind.READ
        kinds = {w.kind for w in self.watchpoints if w.covers(stop.address, 1)}
        return wanted if wanted in kinds else WatchKind.ACCESS

    def interrupt(self) -> None:
        self.unit.request_stop()

    def set_breakpoints(self, software: frozenset[int], hardware: frozenset[int]) -> None:
        addresses = software | hardware
        self.unit.set_breakpoints(addresses)
        debug_breakpoints = getattr(self.engine, "debug_breakpoints", None)
        if debug_breakpoints is not None:
            debug_breakpoints(addresses)              # bt: never translate them

    def set_watchpoints(self, watchpoints: tuple[Watchpoint, ...]) -> None:
        self.watchpoints = watchpoints
        self.unit.set_watchpoints(tuple(
            (w.address, w.length, w.kind is not WatchKind.WRITE, w.kind is not WatchKind.READ)
            for w in watchpoints))

    def detach(self) -> None:
        """No debugger any more: the CPU runs at full speed again."""
        self.unit.detach()

    # --- what the stub tells the user ---------------------------------------------------------------
    def stats(self):
        started = self.machine.started
        return self.machine.statistics(time.perf_counter() - started if started else 0.0)

    def describe(self) -> str:
        label = getattr(self.engine, "label", None)
        return f"soft engine, --technique {self.technique}" + (f" ({label()})" if label else "")
