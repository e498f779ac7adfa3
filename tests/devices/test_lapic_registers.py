"""The local APIC's registers, errors and IA32_APIC_BASE against the Intel SDM vol. 3A chapter 10."""
import pytest

from ringvisor.devices.apic_bus import ApicBus
from ringvisor.devices.lapic import (
    DEFAULT_BASE, ESR_ILLEGAL_REGISTER, ESR_RECEIVE_ILLEGAL_VECTOR, ESR_SEND_ILLEGAL_VECTOR,
    MSR_APIC_BASE, ApicMsrFault, Delivery, LocalApic, Reg, cpuid1_ebx_id,
)
from ringvisor.machine.bus import MmioBus
from lapic_rig import (
    LVT_ERROR, LVT_LINT0, LVT_LINT1, LVT_PERF, LVT_THERMAL, LVT_TIMER, MASKED, enabled, irr_bits,
    rd, wr,
)


# -- power-up state (SDM 10.4.7.1) ---------------------------------------------------------

def test_power_up_state():
    apic = LocalApic(3)
    assert rd(apic, Reg.ID) == 3 << 24
    assert rd(apic, Reg.VERSION) == 0x00050014      # integrated APIC, 6 LVT entries
    assert rd(apic, Reg.DFR) == 0xFFFFFFFF
    assert rd(apic, Reg.SVR) == 0xFF
    assert rd(apic, Reg.TPR) == rd(apic, Reg.PPR) == rd(apic, Reg.APR) == rd(apic, Reg.LDR) == 0
    for reg in (LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR):
        assert rd(apic, reg) == MASKED
    assert rd(apic, Reg.TIMER_INITIAL) == rd(apic, Reg.TIMER_CURRENT) == rd(apic, Reg.TIMER_DIVIDE) == 0
    assert apic.read_msr(MSR_APIC_BASE) == DEFAULT_BASE | 0x800
    assert LocalApic(0, bsp=True).read_msr(MSR_APIC_BASE) == DEFAULT_BASE | 0x900
    assert cpuid1_ebx_id(apic) == 3 << 24


def test_writable_bits_of_each_register():
    apic = LocalApic(0)
    wr(apic, Reg.ID, 0xFFFFFFFF)
    assert rd(apic, Reg.ID) == 0xFF000000
    wr(apic, Reg.LDR, 0xFFFFFFFF)
    assert rd(apic, Reg.LDR) == 0xFF000000
    wr(apic, Reg.DFR, 0)
    assert rd(apic, Reg.DFR) == 0x0FFFFFFF                 # cluster model; bits 27:0 read 1
    wr(apic, Reg.TPR, 0xFFFFFFFF)
    assert rd(apic, Reg.TPR) == 0xFF
    wr(apic, Reg.SVR, 0xFFFFFFFF)
    assert rd(apic, Reg.SVR) == 0x3FF
    wr(apic, Reg.ICR_HIGH, 0xFFFFFFFF)
    assert rd(apic, Reg.ICR_HIGH) == 0xFF000000
    wr(apic, Reg.TIMER_DIVIDE, 0xFFFFFFFF)
    assert rd(apic, Reg.TIMER_DIVIDE) == 0xB
    expected = {LVT_TIMER: 0x000700FF, LVT_THERMAL: 0x000107FF, LVT_PERF: 0x000107FF,
                LVT_LINT0: 0x0001A7FF, LVT_LINT1: 0x0001A7FF, LVT_ERROR: 0x000100FF}
    for reg, mask in expected.items():
        wr(apic, reg, 0xFFFFFFFF)
        assert rd(apic, reg) == mask, hex(reg)


def test_read_only_registers_ignore_writes():
    apic = enabled()
    apic.accept(Delivery.FIXED, 0x40)
    for reg in (Reg.VERSION, Reg.PPR, Reg.APR, Reg.IRR + 0x20, Reg.TIMER_CURRENT):
        before = rd(apic, reg)
        wr(apic, reg, 0)
        assert rd(apic, reg) == before


def test_software_disable_masks_every_lvt_and_keeps_them_masked():
    apic = enabled()
    wr(apic, LVT_LINT0, 0x700)
    assert rd(apic, LVT_LINT0) == 0x700
    wr(apic, Reg.SVR, 0xFF)                                  # software disable
    assert rd(apic, LVT_LINT0) == MASKED | 0x700
    wr(apic, LVT_LINT0, 0x700)
    assert rd(apic, LVT_LINT0) & MASKED                      # cannot be cleared while disabled


def test_narrow_reads_give_register_bytes_and_narrow_writes_are_ignored():
    apic = LocalApic(0x12)
    assert apic.mmio_read(Reg.ID + 3, 1) == 0x12
    assert apic.mmio_read(Reg.VERSION, 2) == 0x0014
    assert apic.mmio_read(Reg.ID + 4, 4) == 0                # bytes 4-15 of a register
    apic.mmio_write(Reg.TPR, 1, 0x50)
    assert rd(apic, Reg.TPR) == 0


# -- errors (SDM 10.5.3) ---------------------------------------------------------------------

def test_esr_reports_after_a_write_and_clears_on_back_to_back_writes():
    apic = enabled()
    apic.accept(Delivery.FIXED, 0x05)                        # vectors 0-15 are illegal
    assert irr_bits(apic) == 0
    assert rd(apic, Reg.ESR) == 0                            # not visible before a write
    wr(apic, Reg.ESR, 0)
    assert rd(apic, Reg.ESR) == ESR_RECEIVE_ILLEGAL_VECTOR
    wr(apic, Reg.ESR, 0)
    assert rd(apic, Reg.ESR) == 0


def test_send_illegal_vector_and_illegal_register():
    apic = enabled()
    wr(apic, Reg.ICR_LOW, 0x0000000F)
    rd(apic, 0x3F0)                                          # reserved offset
    wr(apic, Reg.ESR, 0)
    assert rd(apic, Reg.ESR) == ESR_SEND_ILLEGAL_VECTOR | ESR_ILLEGAL_REGISTER


def test_error_interrupt_through_lvt_error():
    apic = enabled()
    wr(apic, LVT_ERROR, 0xFE)
    apic.accept(Delivery.FIXED, 0x01)
    assert apic.acknowledge() == 0xFE


# -- IA32_APIC_BASE (SDM 10.4.4) ----------------------------------------------------------------

def test_apic_base_msr_reserved_bits_fault_and_bsp_is_read_only():
    apic = LocalApic(0, bsp=True)
    for bad in (1 << 32, 1 << 10, 1 << 9, 0xFF):
        with pytest.raises(ApicMsrFault):
            apic.write_msr(MSR_APIC_BASE, DEFAULT_BASE | 0x800 | bad)
    apic.write_msr(MSR_APIC_BASE, DEFAULT_BASE | 0x800)
    assert apic.read_msr(MSR_APIC_BASE) == DEFAULT_BASE | 0x900
    assert apic.read_msr(0x10) is None and not apic.write_msr(0x10, 0)


def test_global_disable_returns_to_power_up_state_and_hides_the_page():
    mmio = MmioBus()
    bus = ApicBus(mmio)
    apic = enabled(5)
    bus.attach(apic)
    wr(apic, Reg.TPR, 0x30)
    apic.write_msr(MSR_APIC_BASE, DEFAULT_BASE)              # EN = 0
    assert mmio.read(DEFAULT_BASE + Reg.ID, 4) == 0xFFFFFFFF
    apic.accept(Delivery.FIXED, 0x40)
    assert not apic.pending()
    apic.write_msr(MSR_APIC_BASE, DEFAULT_BASE | 0x800)
    assert mmio.read(DEFAULT_BASE + Reg.ID, 4) == 5 << 24
    assert mmio.read(DEFAULT_BASE + Reg.TPR, 4) == 0 and mmio.read(DEFAULT_BASE + Reg.SVR, 4) == 0xFF


def test_relocated_page():
    mmio = MmioBus()
    bus = ApicBus(mmio)
    apic = LocalApic(2)
    bus.attach(apic)
    apic.write_msr(MSR_APIC_BASE, 0xFED00000 | 0x800)
    assert mmio.read(0xFED00000 + Reg.ID, 4) == 2 << 24
    assert mmio.read(DEFAULT_BASE + Reg.ID, 4) == 0xFFFFFFFF


def test_each_cpu_sees_its_own_apic_at_the_same_address():
    mmio = MmioBus()
    bus = ApicBus(mmio)
    for i in range(3):
        bus.attach(LocalApic(i, bsp=i == 0))
    for i in range(3):
        bus.current = i
        assert mmio.read(DEFAULT_BASE + Reg.ID, 4) == i << 24
