"""A segment selector changed from gdb: what loading it means for an engine
that takes whole register states (the soft CPU without a monitor, KVM)."""
from __future__ import annotations

from ringvisor.cpu_state import CpuState
from ringvisor.gdb.target import TargetError

CR0_PE, EFLAGS_VM = 1, 1 << 17


def reloaded(old: CpuState, new: CpuState) -> CpuState:
    """`new` with every changed selector loaded as the guest would load it:
    in real and virtual-8086 mode base = selector * 16; a protected-mode load
    reads a descriptor and may fault, which gdb cannot be told: refused."""
    for name in CpuState.SEGMENTS:
        seg = getattr(new, name)
        if seg.selector == getattr(old, name).selector:
            continue
        if new.cr0 & CR0_PE and not new.eflags & EFLAGS_VM:
            raise TargetError(f"{name}: loading a protected-mode selector from gdb is not "
                              "supported (set it in real or virtual-8086 mode)")
        seg = seg.copy()
        seg.base = seg.selector << 4
        setattr(new, name, seg)
    return new
