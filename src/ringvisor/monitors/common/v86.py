"""Virtual-8086 mode under the trap and bt monitors (SDM vol. 3A ch. 20).

The guest kernel's v86 task runs directly on the real CPU in real
virtual-8086 mode: EFLAGS.VM=1, CPL 3, the segment registers loaded the
real-mode way, the guest's linear addresses through the shadow page tables
at user privilege. The monitor keeps real IOPL 0, so everything the guest's
virtual IOPL decides traps: CLI, STI, PUSHF, POPF, INT n and IRET raise
#GP(0), and IN/OUT/INS/OUTS #GP(0) too (the monitor's TSS has no I/O
bitmap); v86_emulate.py does them against the virtual EFLAGS or reflects
the #GP when the guest's own IOPL (or I/O bitmap) would give one.

This module is the way in and the way out:

* `enter`: the guest kernel's IRET at virtual CPL 0 popping EFLAGS.VM=1
  (SDM IRET, RETURN-TO-VIRTUAL-8086-MODE), emulated by delivery.far_return;
* `frame_segments`: a trap out of v86 code through the monitor's IDT
  pushed ES, DS, FS, GS above SS:ESP and left them null: the guest's
  segments are read back from that frame;
* delivery.deliver then takes an event out of v86 mode to the guest's
  ring-0 handler with the v86 frame (`pushed_selectors`, `leave`).
"""
from __future__ import annotations

from ringvisor.cpu.semantics.segments import null_segment, v86_segment
from ringvisor.monitors.common.guest_mmu import GP, VirtualFault
from ringvisor.monitors.common.vcpu import VM

DATA_SEGMENTS = ("es", "ds", "fs", "gs")       # popped by IRET in this order after SS:ESP
PUSHED = ("gs", "fs", "ds", "es")              # pushed by an interrupt in this order, before SS
CS_LIMIT = 0xFFFF


def enter(mon, st, pop, eip: int, cs: int, popped: int, writable: int) -> None:
    """IRET (32-bit) at virtual CPL 0 whose EFLAGS image has VM=1: pops ESP,
    SS, ES, DS, FS, GS after EIP, CS, EFLAGS. All of the frame is read
    before anything changes (a #PF leaves the guest as it was)."""
    esp, ss, *segs = (pop(3 + k) for k in range(6))
    if eip > CS_LIMIT:
        raise VirtualFault(GP, 0)
    v = mon.vcpu
    flags = (popped & writable) | VM | 2
    v.cpl, v.vm = 3, True
    v.set_from_flags(flags)
    st.cs, st.ss = v86_segment(cs), v86_segment(ss)
    for name, sel in zip(DATA_SEGMENTS, segs):
        setattr(st, name, v86_segment(sel))
    st.esp, st.eip = esp, eip
    st.eflags = v.real_flags(flags)
    mon.stats["v86_entries"] += 1


def frame_segments(st, cs: int, ss: int, region, at: int) -> None:
    """The guest's segment registers at a trap out of virtual-8086 mode:
    CS and SS from the frame, ES, DS, FS, GS from the four dwords above it
    on the monitor's stack (physical `at` in the region)."""
    st.cs, st.ss = v86_segment(cs), v86_segment(ss)
    for i, name in enumerate(DATA_SEGMENTS):
        setattr(st, name, v86_segment(region.read_u32(at + 4 * i) & 0xFFFF))


def pushed_selectors(st) -> list[int]:
    """GS, FS, DS, ES as an interrupt from virtual-8086 mode pushes them."""
    return [getattr(st, name).selector & 0xFFFF for name in PUSHED]


def leave(mon, st) -> None:
    """The event is delivered: the guest kernel runs at ring 0 with DS, ES,
    FS and GS null (SDM 6.12.1, INTERRUPT-FROM-VIRTUAL-8086-MODE)."""
    mon.vcpu.vm = False
    for name in DATA_SEGMENTS:
        setattr(st, name, null_segment(0))
    mon.stats["v86_exits"] += 1
