"""The local APIC's LINT0/LINT1 pins (SDM vol. 3A 10.5.1): virtual wire mode and NMI."""
from ringvisor.devices.lapic import DEFAULT_BASE, MSR_APIC_BASE, LocalApic, Reg
from lapic_rig import LVT_LINT0, LVT_LINT1, enabled, isr_bits, rd, wr


# -- LINT0 / LINT1 (SDM 10.5.1) ----------------------------------------------------------------

class FakePic:
    def __init__(self):
        self.int_pin, self.vector = False, 0x20

    def pending(self):
        return self.int_pin

    def acknowledge(self):
        self.int_pin = False
        return self.vector


def test_virtual_wire_mode_takes_the_8259_vector_through_lint0():
    pic = FakePic()
    apic = LocalApic(0, bsp=True, extint=pic)
    pic.int_pin = True
    assert not apic.pending()                                # LINT0 masked at power-up
    wr(apic, Reg.SVR, 0x1FF)
    wr(apic, LVT_LINT0, 0x700)                               # ExtINT, as firmware leaves it
    assert apic.pending()
    wr(apic, Reg.TPR, 0xFF)                                  # ExtINT bypasses the priorities
    assert apic.acknowledge() == 0x20
    assert isr_bits(apic) == 0 and not apic.pending()


def test_globally_disabled_apic_passes_intr_and_nmi_pins_through():
    pic = FakePic()
    apic = LocalApic(0, bsp=True, extint=pic)
    apic.write_msr(MSR_APIC_BASE, DEFAULT_BASE)
    pic.int_pin = True
    assert apic.pending() and apic.acknowledge() == 0x20
    apic.set_lint(1, 1)
    assert apic.take_nmi()


def test_lint1_nmi_and_lint0_fixed_edge():
    apic = enabled()
    wr(apic, LVT_LINT1, 0x400)
    apic.set_lint(1, 1)
    apic.set_lint(1, 1)                                      # no second edge
    assert apic.take_nmi() and not apic.take_nmi()
    wr(apic, LVT_LINT0, 0x33)
    apic.set_lint(0, 1)
    assert apic.acknowledge() == 0x33
    assert rd(apic, Reg.TMR + 0x10) == 0


def test_lint0_level_triggered_fixed_uses_remote_irr():
    apic = enabled()
    wr(apic, LVT_LINT0, 1 << 15 | 0x34)
    apic.set_lint(0, 1)
    assert rd(apic, LVT_LINT0) & (1 << 14)                   # remote IRR
    assert rd(apic, Reg.TMR + 0x10) == 1 << (0x34 - 32)
    assert apic.acknowledge() == 0x34
    apic.set_lint(0, 1)
    assert not apic.pending()                                # held off by remote IRR
    wr(apic, Reg.EOI, 0)                                     # line still high: again
    assert apic.pending() and apic.acknowledge() == 0x34
    apic.set_lint(0, 0)
    wr(apic, Reg.EOI, 0)
    assert not apic.pending() and not rd(apic, LVT_LINT0) & (1 << 14)
