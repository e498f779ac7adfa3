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

from ringvisor.cpu_state import Segment
from ringvisor.monitors.common.guest_mmu import GP, VirtualFault
from ringvisor.monitors.common.outcomes import JUMPED

SYSENTER_CS, SYSENTER_ESP, SYSENTER_EIP = 0x174, 0x175, 0x176
IF, VM, RF = 0x200, 0x20000, 0x10000


def _flat(mon, selector: int, name: str, cpl: int):
    """The real cache for the flat 4 GiB code or stack segment at virtual CPL `cpl`."""
    return mon.deprivileged_cache(Segment.flat32(selector, name == "cs", cpl), name, cpl)


def _sysenter_cs(mon) -> int:
    cs = mon.vcpu.msr.get(SYSENTER_CS, 0) & 0xFFFC
    if not cs:
        raise VirtualFault(GP, 0)
    return cs


def sysenter(mon, st, ins):
    v = mon.vcpu
    cs = _sysenter_cs(mon)
    v.cpl = 0
    st.cs, st.ss = _flat(mon, cs, "cs", 0), _flat(mon, cs + 8, "ss", 0)
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
    st.cs, st.ss = _flat(mon, cs + 16, "cs", 3), _flat(mon, cs + 24, "ss", 3)
    st.esp, st.eip = st.ecx, st.edx
    return JUMPED


HANDLERS = {"SYSENTER": (sysenter, False), "SYSEXIT": (sysexit, True)}
