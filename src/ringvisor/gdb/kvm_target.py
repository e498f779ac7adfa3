"""The kvm engine as a gdb target, through KVM_SET_GUEST_DEBUG.

- software breakpoints: `int3` written at the breakpoint's physical address
  while the guest runs (taken out whenever it stops, so gdb's `m` and `M`
  never see them), with KVM_GUESTDBG_USE_SW_BP: the #BP exits to us
  (KVM_EXIT_DEBUG, exception 3) instead of reaching the guest's IDT;
- hardware breakpoints and watchpoints: DR0-DR3 and DR7 with
  KVM_GUESTDBG_USE_HW_BP (four slots; 1, 2, 4 or 8 aligned bytes; x86 has no
  read-only watchpoint, so `rwatch` stops on writes too, as on every x86);
- single step: KVM_GUESTDBG_SINGLESTEP (a #DB with DR6.BS);
- Ctrl-C: immediate_exit and a signal to the vCPU thread, as the watchdog does.

Registers go through KVM_GET/SET_REGS and SREGS, memory through the guest's
own page tables (`LinearMemory`). Where the host's KVM refuses an ioctl (PVM
may), gdb gets one line and the error says which.
"""
from __future__ import annotations

import signal
import threading
import time

from ringvisor import exits as X
from ringvisor.cpu_state import CpuState
from ringvisor.errors import GuestCrashed, KvmUnavailable
from ringvisor.exits import DebugStop
from ringvisor.gdb import selectors
from ringvisor.gdb.linear import LinearMemory
from ringvisor.gdb.target import (BreakpointHit, Crashed, Exited, Interrupted, MemoryFault,
                                  Stepped, Stop, TargetError, WatchKind, Watchpoint, WatchpointHit)
from ringvisor.kvm import ioctls as I

INT3 = b"\xCC"
PVM_INT3 = ("this host's KVM (PVM) cannot intercept int3 in guest kernel code, so every "
            "breakpoint is a hardware one")
DR7_GE_LE = 0x300              # exact breakpoints (recommended with any enabled)
RW_BITS = {None: 0b00, WatchKind.WRITE: 0b01, WatchKind.READ: 0b11, WatchKind.ACCESS: 0b11}
LEN_BITS = {1: 0b00, 2: 0b01, 4: 0b11, 8: 0b10}


def _ignore(signum, frame):
    pass


class KvmTarget:
    hardware_slots = 4

    def __init__(self, machine, technique: str):
        self.machine, self.technique = machine, technique
        self.engine = machine.engine
        self.vcpu = self.engine.vcpu
        self.memory = LinearMemory(machine.memory, self.read_registers)
        self.software: frozenset[int] = frozenset()
        self.hardware: frozenset[int] = frozenset()
        self.watchpoints: tuple[Watchpoint, ...] = ()
        self.slots: list = []                         # DR0-DR3: a linear EIP or a Watchpoint
        self.stop_requested = False
        self.result = None
        self.crash: GuestCrashed | None = None
        self._vcpu_thread = threading.get_ident()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR1, _ignore)    # interrupt() signals between runs too
        # PVM emulates guest ring-0 code and fails on an int3 it is to intercept:
        # there software breakpoints take debug registers too.
        self.int3_refused = self.engine.backend.emulates_ring0
        self._run = self.engine.run
        self.engine.run = self._debug_run             # the machine's vCPU loop calls this

    # --- registers and memory ----------------------------------------------------------------
    def read_registers(self) -> CpuState:
        return self.engine.get_state()

    def write_registers(self, state: CpuState) -> None:
        self.engine.set_state(selectors.reloaded(self.engine.get_state(), state))

    def read_memory(self, address: int, length: int) -> bytes:
        return self.memory.read(address, length)

    def write_memory(self, address: int, data: bytes) -> None:
        self.memory.write(address, data)

    # --- running --------------------------------------------------------------------------------
    def _debug_run(self):
        """The engine's run, with KVM's debug exits and our stop requests
        turned into a DebugStop that leaves the vCPU loop."""
        if self.stop_requested:
            self.stop_requested = False
            raise DebugStop("interrupt")
        exit = self._run()
        if exit.__class__ is X.Debug:
            raise self._decode(exit)
        if exit.__class__ is X.Interrupted and self.stop_requested:
            self.stop_requested = False
            raise DebugStop("interrupt")
        return exit

    def _decode(self, d: X.Debug) -> DebugStop:
        if d.exception == 3:
            return DebugStop("breakpoint", d.pc)
        for i, slot in enumerate(self.slots):
            if d.dr6 >> i & 1:
                if isinstance(slot, Watchpoint):
                    access = "read" if slot.kind is WatchKind.READ else "write"
                    return DebugStop("watch", slot.address, access)
                return DebugStop("breakpoint", slot)
        return DebugStop("step")

    def resume(self, step: bool) -> Stop:
        eip = self._linear_eip()
        at_breakpoint = eip in self.software or eip in self.hardware
        try:
            if step or not at_breakpoint:
                return self._run_machine(step, skip=eip if at_breakpoint else None)
            # Over our own breakpoint first: one step without it (x86's RF).
            stop = self._run_machine(True, skip=eip)
            if not isinstance(stop, Stepped):
                return stop
            return self._run_machine(False, skip=None)
        except KvmUnavailable as e:
            raise TargetError(f"this host's KVM refused guest debugging: {e}") from None

    def _run_machine(self, step: bool, skip: int | None) -> Stop:
        planted = [] if self.int3_refused else self._plant(self.software - {skip})
        try:
            self._apply(step, bool(planted), skip)
            self.result = self.machine.run()
        except DebugStop as stop:
            return self._stop(stop)
        except GuestCrashed as crash:
            self.crash = crash
            return Crashed(str(crash).splitlines()[0])
        finally:
            self._unplant(planted)
        return Exited(self.result.status)

    def _stop(self, stop: DebugStop) -> Stop:
        if stop.kind == "breakpoint":
            return BreakpointHit(stop.address)
        if stop.kind == "watch":
            kind = next(w.kind for w in self.watchpoints if w.address == stop.address)
            return WatchpointHit(stop.address, kind)
        if stop.kind == "step":
            return Stepped()
        return Interrupted()

    def _linear_eip(self) -> int:
        s = self.engine.get_state()
        return (s.cs.base + s.eip) & 0xFFFFFFFF

    def _plant(self, addresses) -> list[tuple[int, bytes]]:
        """int3 at each breakpoint the guest maps now; (physical, old byte) each."""
        planted = []
        for linear in addresses:
            try:
                physical = self.memory.translate(linear)
            except MemoryFault:
                continue                              # not mapped yet: nothing to run there
            if not self.machine.memory.contains(physical, 1):
                continue
            planted.append((physical, bytes(self.machine.memory.read(physical, 1))))
            self.machine.memory.write(physical, INT3)
        return planted

    def _unplant(self, planted) -> None:
        for physical, old in reversed(planted):
            self.machine.memory.write(physical, old)

    def _apply(self, step: bool, software: bool, skip: int | None) -> None:
        control = I.GUESTDBG_ENABLE
        if step:
            control |= I.GUESTDBG_SINGLESTEP
        if software:
            control |= I.GUESTDBG_USE_SW_BP
        debugreg = [0] * 8
        if self.slots:
            control |= I.GUESTDBG_USE_HW_BP
            dr7 = DR7_GE_LE
            for i, slot in enumerate(self.slots):
                if slot == skip:
                    continue                          # the instruction we resume at
                if isinstance(slot, Watchpoint):
                    debugreg[i] = slot.address
                    dr7 |= (RW_BITS[slot.kind] | LEN_BITS[slot.length] << 2) << (16 + 4 * i)
                else:
                    debugreg[i] = slot
                dr7 |= 2 << (2 * i)                   # G_i
            debugreg[7] = dr7
        self.vcpu.set_guest_debug(control, tuple(debugreg))

    def interrupt(self) -> None:
        self.stop_requested = True
        self.engine.request_stop()
        signal.pthread_kill(self._vcpu_thread, signal.SIGUSR1)

    def set_breakpoints(self, software: frozenset[int], hardware: frozenset[int]) -> None:
        self._assign_slots(software, hardware, self.watchpoints)
        self.software, self.hardware = software, hardware

    def set_watchpoints(self, watchpoints: tuple[Watchpoint, ...]) -> None:
        for w in watchpoints:
            if w.length not in LEN_BITS or w.address % w.length:
                raise TargetError("x86 debug registers watch 1, 2, 4 or 8 bytes aligned to their "
                                  f"length, not {w.length} at {w.address:#x}")
        self._assign_slots(self.software, self.hardware, watchpoints)
        self.watchpoints = watchpoints

    def _assign_slots(self, software, hardware, watchpoints) -> None:
        execute = (hardware | software) if self.int3_refused else hardware
        slots = sorted(execute) + list(watchpoints)
        if len(slots) > self.hardware_slots:
            raise TargetError(PVM_INT3 + "; breakpoints and watchpoints share the four debug "
                              "registers, and all are in use")
        self.slots = slots

    def detach(self) -> None:
        self.software, self.hardware, self.watchpoints, self.slots = frozenset(), frozenset(), (), []
        try:
            self.vcpu.set_guest_debug(0)
        except KvmUnavailable:
            pass

    # --- what the stub tells the user ---------------------------------------------------------------
    def stats(self):
        started = self.machine.started
        return self.machine.statistics(time.perf_counter() - started if started else 0.0)

    def describe(self) -> str:
        return f"kvm engine ({self.engine.backend.description}), --technique {self.technique}" + \
            (f"; {PVM_INT3}" if self.int3_refused else "")
