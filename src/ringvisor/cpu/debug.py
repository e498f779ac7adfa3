"""Debugging the soft CPU from outside (a GDB stub): breakpoints, watchpoints,
single steps and stop requests, all taken at *guest* instruction boundaries.

`SoftEngine.run()` calls `DebugUnit.boundary()` before every instruction it
runs alone and before every compiled trace; the block cache compiles no code
on a page holding a breakpoint (`pages`), so every instruction there is
checked. A stop leaves `run()` as a `DebugStop` with the CPU between two
instructions.

Under a monitor the real CPU also runs the monitor's own code (trap stubs,
the translation cache's glue): `guest_eip(cpu)` says where the guest is at
this boundary, as a guest linear address, or None when the CPU is not at one
of the guest's instruction boundaries. Stops are taken only where it is not
None, so gdb never sees the monitor's state.

Watchpoints are exact: while any is set, the CPU runs on its interpreter
(no compiled traces) with its data accessors wrapped; an access that
overlaps a watched range is reported once the instruction has retired (a
faulting instruction reports nothing), as x86 debug registers do.
"""
from __future__ import annotations

from typing import Callable

from ringvisor.cpu.core import CS, Core
from ringvisor.exits import DebugStop

M32 = 0xFFFFFFFF
READ, WRITE = "read", "write"


def flat_eip(cpu) -> int:
    """The linear address of the next instruction (no monitor in the way)."""
    return (cpu.sbase[CS] + cpu.eip) & M32


class DebugUnit:
    def __init__(self, cpu, guest_eip: Callable[[object], int | None] = flat_eip):
        self.cpu = cpu
        self.guest_eip = guest_eip
        self.breakpoints: frozenset[int] = frozenset()
        self.pages: frozenset[int] = frozenset()
        self.watchpoints: tuple = ()              # (address, length, reads, writes)
        self.step = False
        self.stop_requested = False
        self.guest_retired = 0                    # guest instructions seen to retire
        self._skip: int | None = None             # the resume's first EIP: its breakpoint is passed
        self._skip_retired = 0
        self._step_from = None
        self._armed = False
        self._last_guest = False
        self._last_count = 0
        self._hit = None                          # (address, access) of the instruction running
        self._pending = None                      # a hit whose instruction retired
        self._watching = False

    @property
    def single(self) -> bool:
        """Run one instruction at a time (stepping, or watching data)."""
        return self.step or self._watching

    # --- set by the stub's target ------------------------------------------------------
    def set_breakpoints(self, addresses: frozenset[int]) -> None:
        self.breakpoints = frozenset(a & M32 for a in addresses)
        self.pages = frozenset(a >> 12 for a in self.breakpoints)
        self.cpu.blocks.breakpoints_changed()

    def set_watchpoints(self, watchpoints: tuple) -> None:
        """(address, length, reads, writes) tuples: what to watch, and for what."""
        self.watchpoints = tuple(watchpoints)
        self._watch(bool(self.watchpoints))

    def resume(self, step: bool) -> None:
        """Before running: the breakpoint at the current EIP is passed once
        (as x86's RF does), and a step stops at the next guest boundary."""
        cpu = self.cpu
        self.step = step
        self._last_guest = False
        self._hit = self._pending = None
        # Where the guest is now; unknown while the CPU holds another state
        # (the host's, between VM exits): then at the first guest boundary.
        self._armed = self.guest_eip(cpu) is None
        if not self._armed:
            self._arm(cpu)

    def _arm(self, cpu) -> None:
        self._armed = False
        self._skip = self.guest_eip(cpu)
        self._skip_retired = self.guest_retired
        self._step_from = (self.guest_retired, cpu.instructions, cpu.segs[CS].selector, cpu.eip)

    def request_stop(self) -> None:
        self.stop_requested = True

    def detach(self) -> None:
        self.set_breakpoints(frozenset())
        self.set_watchpoints(())
        self.step = False

    # --- called by the CPU ---------------------------------------------------------------
    def boundary(self, cpu) -> None:
        """Between two instructions: raise DebugStop if the guest must stop here."""
        count = cpu.instructions
        retired = count != self._last_count
        if self._last_guest and retired:
            self.guest_retired += 1
        if self._hit is not None:
            if retired:
                self._pending = self._hit
            self._hit = None
        g = self.guest_eip(cpu)
        self._last_guest, self._last_count = g is not None, count
        if g is None:
            return
        if self._armed:
            self._arm(cpu)
        if self._pending is not None:
            address, access = self._pending
            self._pending = None
            raise DebugStop("watch", address, access)
        if self.stop_requested:
            self.stop_requested = False
            raise DebugStop("interrupt")
        if self.step and (self.guest_retired, count, cpu.segs[CS].selector, cpu.eip) != self._step_from:
            raise DebugStop("step")
        if g in self.breakpoints:
            if g == self._skip and self.guest_retired == self._skip_retired:
                return
            raise DebugStop("breakpoint", g)
        if self._skip is not None and g != self._skip:
            self._skip = None

    # --- watchpoints: the CPU's data accessors, wrapped while any is set -------------------
    def _watch(self, on: bool) -> None:
        cpu = self.cpu
        if on == self._watching:
            return
        self._watching = on
        names = ("rd", "wr", "rd_lin", "wr_lin")
        if not on:
            for name in names:
                cpu.__dict__.pop(name, None)
            return
        def rd(s, off, n):
            self._access((cpu.sbase[s] + off) & M32, n, READ)
            return Core.rd(cpu, s, off, n)

        def wr(s, off, n, v):
            self._access((cpu.sbase[s] + off) & M32, n, WRITE)
            return Core.wr(cpu, s, off, n, v)

        def rd_lin(lin, n, user=None):
            self._access(lin & M32, n, READ)
            return Core.rd_lin(cpu, lin, n, user)

        def wr_lin(lin, n, v, user=None):
            self._access(lin & M32, n, WRITE)
            return Core.wr_lin(cpu, lin, n, v, user)

        cpu.rd, cpu.wr, cpu.rd_lin, cpu.wr_lin = rd, wr, rd_lin, wr_lin

    def _access(self, lin: int, n: int, access: str) -> None:
        if self._hit is not None:
            return                                # the first hit of an instruction is reported
        for address, length, reads, writes in self.watchpoints:
            if lin < address + length and address < lin + n and (reads if access == READ else writes):
                self._hit = (max(lin, address), access)
                return
