"""The I/O APIC (82093AA datasheet, ICH I/O APIC) and the PC's legacy IRQ routing."""
import pytest

from ringvisor.devices.apic_bus import ApicBus
from ringvisor.devices.ioapic import DEFAULT_BASE, IoApic
from ringvisor.devices.irq_routing import IsaInterrupts, gsi_of, is_level
from ringvisor.devices.lapic import LocalApic, Reg
from ringvisor.devices.pic8259 import PicPair
from ringvisor.machine.bus import MmioBus

MASKED, LEVEL, REMOTE_IRR, LOGICAL = 1 << 16, 1 << 15, 1 << 14, 1 << 11


def machine(cpus=2):
    mmio = MmioBus()
    bus = ApicBus(mmio)
    apics = [LocalApic(i, bsp=i == 0) for i in range(cpus)]
    for apic in apics:
        bus.attach(apic)
        apic.mmio_write(Reg.SVR, 4, 0x1FF)
    ioapic = IoApic(apic_id=cpus)
    bus.attach_ioapic(ioapic)
    ioapic.register(mmio)
    return mmio, ioapic, apics


def reg_read(mmio, index):
    mmio.write(DEFAULT_BASE, 4, index)
    return mmio.read(DEFAULT_BASE + 0x10, 4)


def reg_write(mmio, index, value):
    mmio.write(DEFAULT_BASE, 4, index)
    mmio.write(DEFAULT_BASE + 0x10, 4, value)


def route(mmio, pin, low, dest=0):
    reg_write(mmio, 0x11 + 2 * pin, dest << 24)
    reg_write(mmio, 0x10 + 2 * pin, low)


def test_identification_registers():
    mmio, ioapic, _ = machine()
    assert reg_read(mmio, 0x00) == 2 << 24
    assert reg_read(mmio, 0x01) == 0x00170020                # 24 pins, version 0x20
    reg_write(mmio, 0x00, 0xFFFFFFFF)
    assert reg_read(mmio, 0x00) == 0x0F000000
    assert reg_read(mmio, 0x02) == 0x0F000000                # arbitration ID follows
    reg_write(mmio, 0x01, 0)
    assert reg_read(mmio, 0x01) == 0x00170020
    mmio.write(DEFAULT_BASE, 1, 0x01)                        # IOREGSEL is a byte register
    assert mmio.read(DEFAULT_BASE, 4) == 0x01
    assert mmio.read(DEFAULT_BASE + 0x12, 1) == 0x17


def test_redirection_entries_reset_masked_and_keep_writable_bits():
    mmio, ioapic, _ = machine()
    for pin in range(24):
        assert reg_read(mmio, 0x10 + 2 * pin) == MASKED
        assert reg_read(mmio, 0x11 + 2 * pin) == 0
    reg_write(mmio, 0x10, 0xFFFFFFFF)
    assert reg_read(mmio, 0x10) == 0x0001AFFF                # delivery status, remote IRR: RO
    reg_write(mmio, 0x11, 0xFFFFFFFF)
    assert reg_read(mmio, 0x11) == 0xFF000000
    assert reg_read(mmio, 0x10 + 2 * 24) == 0                # past the last pin


def test_edge_pin_sends_one_message_per_rising_edge():
    mmio, ioapic, apics = machine()
    route(mmio, 4, 0x41, dest=1)
    ioapic.set_irq(4, 1)
    ioapic.set_irq(4, 1)
    assert apics[1].acknowledge() == 0x41 and not apics[0].pending()
    apics[1].mmio_write(Reg.EOI, 4, 0)
    assert not apics[1].pending()
    ioapic.set_irq(4, 0)
    ioapic.set_irq(4, 1)
    assert apics[1].pending()
    assert not apics[1].tmr >> 0x41 & 1


def test_edges_on_a_masked_pin_are_lost():
    mmio, ioapic, apics = machine()
    route(mmio, 3, MASKED | 0x42)
    ioapic.set_irq(3, 1)
    ioapic.set_irq(3, 0)
    route(mmio, 3, 0x42)
    assert not apics[0].pending()


def test_level_pin_remote_irr_and_eoi_broadcast():
    mmio, ioapic, apics = machine()
    route(mmio, 10, LEVEL | 0x50, dest=0)
    ioapic.set_irq(10, 1)
    assert reg_read(mmio, 0x10 + 20) & REMOTE_IRR
    assert apics[0].tmr >> 0x50 & 1
    assert apics[0].acknowledge() == 0x50
    apics[0].mmio_write(Reg.EOI, 4, 0)                       # line still asserted: sent again
    assert apics[0].acknowledge() == 0x50
    assert ioapic.messages[10] == 2
    ioapic.set_irq(10, 0)                                    # the device was serviced
    apics[0].mmio_write(Reg.EOI, 4, 0)
    assert not reg_read(mmio, 0x10 + 20) & REMOTE_IRR
    assert not apics[0].pending() and ioapic.messages[10] == 2


def test_eoi_register_and_edge_switch_clear_remote_irr():
    mmio, ioapic, apics = machine()
    route(mmio, 11, LEVEL | 0x51)
    ioapic.set_irq(11, 1)
    ioapic.set_irq(11, 0)
    mmio.write(DEFAULT_BASE + 0x40, 4, 0x51)                 # the ICH's EOI register
    assert not reg_read(mmio, 0x10 + 22) & REMOTE_IRR
    ioapic.set_irq(11, 1)
    assert reg_read(mmio, 0x10 + 22) & REMOTE_IRR
    route(mmio, 11, 0x51)                                    # to edge: remote IRR dropped
    assert not reg_read(mmio, 0x10 + 22) & REMOTE_IRR


def test_unmasking_an_asserted_level_pin_sends():
    mmio, ioapic, apics = machine()
    route(mmio, 12, MASKED | LEVEL | 0x52)
    ioapic.set_irq(12, 1)
    assert not apics[0].pending()
    route(mmio, 12, LEVEL | 0x52)
    assert apics[0].acknowledge() == 0x52


def test_logical_lowest_priority_and_nmi_entries():
    mmio, ioapic, apics = machine()
    for i, apic in enumerate(apics):
        apic.mmio_write(Reg.LDR, 4, (1 << i) << 24)
    apics[0].mmio_write(Reg.TPR, 4, 0x80)
    route(mmio, 5, LOGICAL | 1 << 8 | 0x60, dest=0b11)       # lowest priority to both
    ioapic.set_irq(5, 1)
    assert not apics[0].pending() and apics[1].acknowledge() == 0x60
    route(mmio, 6, 4 << 8, dest=0)                           # NMI
    ioapic.set_irq(6, 1)
    assert apics[0].take_nmi()


def test_extint_entry_hands_the_8259_vector_to_the_cpu():
    pic = PicPair()
    mmio = MmioBus()
    bus = ApicBus(mmio)
    apic = LocalApic(0, bsp=True, extint=pic)
    bus.attach(apic)
    apic.mmio_write(Reg.SVR, 4, 0x1FF)
    ioapic = IoApic(1)
    bus.attach_ioapic(ioapic)
    for port, value in ((0, 0x11), (1, 0x30), (1, 0x04), (1, 0x01)):   # ICW1-4: vectors 0x30
        pic.master.io_write(port, 1, value)
    pic.slave.io_write(0, 1, 0x11)
    for value in (0x38, 0x02, 0x01):
        pic.slave.io_write(1, 1, value)
    pic.set_irq(1, 1)
    assert not apic.pending()                                # LINT0 still masked
    ioapic.write_register(0x10, 7 << 8)                      # pin 0: ExtINT
    ioapic.set_irq(0, 1)
    assert apic.pending() and apic.acknowledge() == 0x31


def test_pc_routing_sends_the_pit_to_pin_2_and_the_rest_one_to_one():
    assert [gsi_of(i) for i in range(16)] == [2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    assert is_level(9) and not is_level(0) and not is_level(4)
    pic = PicPair()
    mmio, ioapic, apics = machine()
    isa = IsaInterrupts(pic, ioapic)
    route(mmio, 2, 0x70)
    route(mmio, 4, 0x74)
    isa.irq_line(0)(1)
    isa.irq_line(4)(1)
    assert apics[0].acknowledge() == 0x74
    assert apics[0].irr >> 0x70 & 1
    assert pic.master.irr == 0b10001                         # the 8259 sees IRQ 0 and 4 too
    with pytest.raises(ValueError):
        isa.irq_line(16)


def test_bad_pin_is_refused():
    with pytest.raises(ValueError):
        IoApic().set_irq(24, 1)
