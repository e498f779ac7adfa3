"""What a debugger (ringvisor.gdb) sees of a guest that runs deprivileged on
the soft CPU: where its instruction boundaries are, and which registers of
its view may be set from outside.

The real CPU runs the guest at ring 1 or 3 and the monitor's own code (trap
stubs) at ring 0, so a boundary at real CPL 0 is never the guest's. The
general registers, EIP and the status flags are the guest's own in the real
state; everything else (CPL, IF, IOPL, control and table registers, segment
caches) is virtualized, and a debugger setting it would bypass the monitor.
"""
from __future__ import annotations

from ringvisor.cpu.core import CS
from ringvisor.cpu_state import CpuState

WRITABLE = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip")
STATUS_FLAGS = 0xCD5                    # CF PF AF ZF SF DF OF


def guest_eip(cpu) -> int | None:
    """The guest's linear EIP, or None inside the monitor (real ring 0)."""
    if cpu.cpl == 0:
        return None
    return (cpu.sbase[CS] + cpu.eip) & 0xFFFFFFFF


def apply(real: CpuState, view: CpuState) -> None:
    """Copy what a debugger may change from the guest's `view` into `real`."""
    for name in WRITABLE:
        setattr(real, name, getattr(view, name))
    real.eflags = (real.eflags & ~STATUS_FLAGS) | (view.eflags & STATUS_FLAGS)
