"""The trap and bt monitors' RDMSR/WRMSR emulation of the local APIC's
MSRs (IA32_APIC_BASE, IA32_TSC_DEADLINE, the x2APIC registers when the
APIC offers x2APIC mode), against the vCPU's LAPIC itself; what the APIC
refuses, and every APIC MSR on the isa machine, is the guest's #GP(0).
And device_access.py's retry when the shadow's pool runs dry."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from ringvisor.cpu_state import CpuState
from ringvisor.devices.apic_bus import ApicBus
from ringvisor.devices.lapic import LocalApic
from ringvisor.monitors.common import emulate as E
from ringvisor.monitors.common.guest_mmu import VirtualFault

BASE, TSC_DEADLINE, X2_ID, X2_VERSION, X2_TPR = 0x1B, 0x6E0, 0x802, 0x803, 0x808
EN, BSP, EXTD = 1 << 11, 1 << 8, 1 << 10


def monitor(apic=None):
    return SimpleNamespace(lapic=apic, vcpu=SimpleNamespace(msr={}), real=None)


def apic(**kw):
    a = LocalApic(3, bsp=True, **kw)
    ApicBus().attach(a)
    return a


def rdmsr(mon, index):
    st = CpuState()
    st.ecx = index
    assert E.rdmsr(mon, st, None) == E.NEXT
    return st.edx << 32 | st.eax


def wrmsr(mon, index, value):
    st = CpuState()
    st.ecx, st.eax, st.edx = index, value & 0xFFFFFFFF, value >> 32
    assert E.wrmsr(mon, st, None) == E.NEXT


def test_apic_base_reads_the_vcpus_lapic():
    assert rdmsr(monitor(apic()), BASE) == 0xFEE00000 | EN | BSP


def test_apic_base_relocates_the_lapic_and_keeps_bsp():
    a = apic()
    mon = monitor(a)
    wrmsr(mon, BASE, 0xFEF00000 | EN)
    assert a.base_address == 0xFEF00000 and rdmsr(mon, BASE) == 0xFEF00000 | EN | BSP


@pytest.mark.parametrize("value", [0xFEE00000 | EN | 1, 0xFEE00000 | EXTD])
def test_what_the_apic_refuses_is_the_guests_gp(value):
    """A reserved bit; EXTD on an APIC without x2APIC."""
    with pytest.raises(VirtualFault) as f:
        wrmsr(monitor(apic()), BASE, value)
    assert (f.value.vector, f.value.code) == (13, 0)


def test_every_apic_msr_is_gp_without_a_lapic():
    """The isa machine: no APIC, as its CPUID says."""
    for index in (BASE, TSC_DEADLINE, X2_ID):
        with pytest.raises(VirtualFault):
            rdmsr(monitor(None), index)


def test_tsc_deadline_only_where_the_apic_has_it():
    with pytest.raises(VirtualFault):
        rdmsr(monitor(apic(tsc_deadline=False)), TSC_DEADLINE)
    mon = monitor(apic(tsc_deadline=True))
    assert rdmsr(mon, TSC_DEADLINE) == 0             # not in TSC-deadline mode: reads 0
    wrmsr(mon, TSC_DEADLINE, 12345)                  # accepted (ignored outside the mode)


def test_x2apic_msrs_are_gp_in_xapic_mode_and_the_apics_in_x2apic_mode():
    a = apic(x2apic=True)
    mon = monitor(a)
    with pytest.raises(VirtualFault):
        rdmsr(mon, X2_ID)
    wrmsr(mon, BASE, 0xFEE00000 | EN | EXTD)
    assert a.x2apic
    assert rdmsr(mon, X2_ID) == 3
    assert rdmsr(mon, X2_VERSION) & 0xFF == 0x14
    wrmsr(mon, X2_TPR, 0x20)
    assert rdmsr(mon, X2_TPR) == 0x20 and a.read_register(0x80) == 0x20


def test_a_device_step_with_no_frame_for_its_table_resets_the_shadow_and_retries():
    """device_access.trapped: the pool ran dry linking the device page's
    shadow table: reset, and the guest's instruction faults again."""
    from collections import Counter

    from ringvisor.cpu.isa.decoder import decode
    from ringvisor.monitors.common import device_access
    from ringvisor.monitors.common.shadow_paging import DeviceAccess, PoolExhausted

    def no_frame(lin):
        raise PoolExhausted()
    resets = []
    mon = SimpleNamespace(same_fault=((0, 0, 0), 5), stats=Counter(), device_accesses=Counter(),
                          stepper=SimpleNamespace(active=False),
                          shadow=SimpleNamespace(device_pte=no_frame),
                          fetch_decode=lambda st: decode(b"\x0f\xb6\x03", True),      # movzx eax,byte [ebx]
                          shadow_reset=lambda: resets.append(1))
    st = CpuState()
    device_access.trapped(mon, st, DeviceAccess(0xFEE00030, 0xFEE00030, False))
    assert resets == [1] and mon.same_fault == (None, 0) and st.eip == 0
    assert mon.stats["mmio_steps"] == 0
