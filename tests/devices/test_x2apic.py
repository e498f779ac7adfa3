"""x2APIC mode (Intel SDM vol. 3A 10.12), with the IA32_APIC_BASE transitions
kvm-unit-tests' x86/apic.c test_enable_x2apic checks."""
import pytest

from ringvisor.devices.apic_bus import ApicBus
from ringvisor.devices.lapic import DEFAULT_BASE, MSR_APIC_BASE, ApicMsrFault, LocalApic, Reg
from ringvisor.devices.x2apic import logical_id
from ringvisor.machine.bus import MmioBus

EN, EXTD, BSP = 1 << 11, 1 << 10, 1 << 8


def machine(n=3, x2apic=True):
    mmio = MmioBus()
    bus = ApicBus(mmio)
    apics = [LocalApic(i, bsp=i == 0, x2apic=x2apic) for i in range(n)]
    for apic in apics:
        bus.attach(apic)
    return mmio, bus, apics


def to_x2apic(apic):
    apic.write_msr(MSR_APIC_BASE, DEFAULT_BASE | EN | EXTD)
    apic.write_msr(0x80F, 0x1FF)                             # SVR: software-enabled


def test_without_x2apic_support_extd_is_reserved_and_the_msrs_are_absent():
    _, _, (apic, *_) = machine(1, x2apic=False)
    with pytest.raises(ApicMsrFault):
        apic.write_msr(MSR_APIC_BASE, DEFAULT_BASE | EN | EXTD)
    assert apic.read_msr(0x802) is None and apic.write_msr(0x808, 0) is False


def test_mode_transitions():
    _, _, (apic, *_) = machine(1)
    base = DEFAULT_BASE
    assert apic.read_msr(0x802) is None                      # xAPIC mode: the MSRs #GP
    with pytest.raises(ApicMsrFault):
        apic.write_msr(MSR_APIC_BASE, base | EXTD)           # xAPIC -> invalid state
    apic.write_msr(MSR_APIC_BASE, base | EN | EXTD)          # xAPIC -> x2APIC
    assert apic.x2apic
    for bad in (base | EXTD, base | EN):                     # invalid, x2APIC -> xAPIC
        with pytest.raises(ApicMsrFault):
            apic.write_msr(MSR_APIC_BASE, bad)
    apic.write_msr(MSR_APIC_BASE, base)                      # x2APIC -> disabled
    for bad in (base | EXTD, base | EN | EXTD):              # disabled -> invalid, x2APIC
        with pytest.raises(ApicMsrFault):
            apic.write_msr(MSR_APIC_BASE, bad)
    apic.write_msr(MSR_APIC_BASE, base | EN)                 # disabled -> xAPIC
    assert apic.hw_enabled and not apic.x2apic
    assert apic.read_msr(MSR_APIC_BASE) == base | EN | BSP


def test_register_msrs_and_their_faults():
    _, _, apics = machine()
    apic = apics[2]
    apic.mmio_write(Reg.ID, 4, 0x40 << 24)                   # an xAPIC-mode ID change...
    to_x2apic(apic)
    assert apic.read_msr(0x802) == 2                         # ...x2APIC has the hardware's ID
    assert apic.read_msr(0x80D) == logical_id(2) == 1 << 2
    assert logical_id(0x35) == 3 << 16 | 1 << 5
    assert apic.read_msr(0x803) == 0x00050014
    apic.write_msr(0x808, 0x20)
    assert apic.read_msr(0x808) == 0x20 and apic.read_msr(0x80A) == 0x20
    for index in (0x80B, 0x83F, 0x80E, 0x831, 0x809, 0x8FF):  # write-only or absent
        with pytest.raises(ApicMsrFault):
            apic.read_msr(index)
    for index, value in ((0x802, 0), (0x80D, 0), (0x80A, 0), (0x80B, 1), (0x828, 1),
                         (0x808, 0x100), (0x80F, 1 << 12), (0x832, 1 << 20), (0x808, 1 << 32)):
        with pytest.raises(ApicMsrFault):
            apic.write_msr(index, value)


def test_the_page_does_not_answer_in_x2apic_mode():
    mmio, bus, apics = machine(1)
    to_x2apic(apics[0])
    assert mmio.read(DEFAULT_BASE + Reg.VERSION, 4) == 0xFFFFFFFF


def test_self_ipi_and_icr():
    _, _, apics = machine()
    for apic in apics:
        to_x2apic(apic)
    apics[0].write_msr(0x83F, 0x51)
    assert apics[0].acknowledge() == 0x51
    apics[0].write_msr(0x830, 2 << 32 | 0x61)                # physical, 32-bit destination
    assert apics[2].acknowledge() == 0x61 and not apics[1].pending()
    assert apics[0].read_msr(0x830) == 2 << 32 | 0x61
    apics[0].write_msr(0x830, 0xFFFFFFFF << 32 | 0x62)       # broadcast
    assert all(a.irr >> 0x62 & 1 for a in apics)
    apics[0].write_msr(0x830, (0 << 16 | 0b110) << 32 | 1 << 11 | 0x63)   # logical: CPUs 1, 2
    assert [a.irr >> 0x63 & 1 for a in apics] == [0, 1, 1]
    with pytest.raises(ApicMsrFault):
        apics[0].write_msr(0x830, 1 << 12)                   # delivery status: reserved here
    apics[0].write_msr(0x83F, 0x05)                          # illegal vector
    apics[0].write_msr(0x828, 0)
    assert apics[0].read_msr(0x828) == 1 << 5


def test_init_keeps_x2apic_mode_and_id():
    _, _, apics = machine(2)
    for apic in apics:
        to_x2apic(apic)
    apics[0].write_msr(0x830, 1 << 32 | 5 << 8 | 1 << 14)    # INIT to CPU 1
    assert apics[1].take_init() and apics[1].x2apic and apics[1].read_msr(0x802) == 1
    assert apics[1].read_msr(0x80F) == 0xFF                  # registers reset
