"""SYSENTER and SYSEXIT under a monitor (SDM vol. 2B).

Both fault when the guest kernel is deprivileged: SYSEXIT needs CPL 0, and
the real IA32_SYSENTER_CS stays 0 (the guest's MSR values live in the
virtual CPU, emulate.wrmsr), so a SYSENTER from guest user code is a #GP
too. The monitor then does what the processor would: load the fixed flat
segments the MSR names (no descriptor is read from the GDT), switch the
virtual CPL, and jump. The real caches are those flat segments as the
monitor's real GDT rewrites them (limits cut below its region, guest ring 0
deprivileged), so the guest sees the selectors it expects.
"""
from __future__ import annotations

from ringvisor.monitors.descriptors import decode, encode_segment
from ringvisor.monitors.guest_mmu import GP, VirtualFault
from ringvisor.monitors.outcomes import JUMPED
from ringvisor.monitors.shadow_gdt import KERNEL_VIEW, USER_VIEW

SYSENTER_CS, SYSENTER_ESP, SYSENTER_EIP = 0x174, 0x175, 0x176
IF, VM, RF = 0x200, 0x20000, 0x10000
CODE, DATA = 11, 3                      # execute/read accessed, read/write accessed


def _flat(mon, selector: int, type_: int, cpl: int):
    """The real cache for a flat 4 GiB segment at virtual CPL `cpl`."""
    view = USER_VIEW if cpl == 3 else KERNEL_VIEW
    raw = mon.gdt.rewrite(encode_segment(0, 0xFFFFFFFF, type_, cpl), view)
    return decode(raw).segment((selector & 0xFFFC) | mon.vcpu.real_ring(cpl))


def _sysenter_cs(mon) -> int:
    cs = mon.vcpu.msr.get(SYSENTER_CS, 0) & 0xFFFC
    if not cs:
        raise VirtualFault(GP, 0)
    return cs


def sysenter(mon, st, ins):
    v = mon.vcpu
    cs = _sysenter_cs(mon)
    v.cpl = 0
    st.cs, st.ss = _flat(mon, cs, CODE, 0), _flat(mon, cs + 8, DATA, 0)
    st.esp = v.msr.get(SYSENTER_ESP, 0)
    st.eip = v.msr.get(SYSENTER_EIP, 0)
    if v.if_:
        mon.note_if_cleared("SYSENTER", st)
    v.if_ = False
    st.eflags &= ~(IF | VM | RF)
    return JUMPED


def sysexit(mon, st, ins):
    v = mon.vcpu
    cs = _sysenter_cs(mon)
    v.cpl = 3
    st.cs, st.ss = _flat(mon, cs + 16, CODE, 3), _flat(mon, cs + 24, DATA, 3)
    st.esp, st.eip = st.ecx, st.edx
    return JUMPED


HANDLERS = {"SYSENTER": (sysenter, False), "SYSEXIT": (sysexit, True)}
