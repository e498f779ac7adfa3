import pytest

from ringvisor.devices.pic8259 import PicPair
from ringvisor.machine.bus import PortBus


def remap(bus, master_base=0x20, slave_base=0x28, icw4=0x01):
    """The classic hobby-kernel / Linux init_8259A sequence."""
    bus.write(0x21, 1, 0xFF)
    bus.write(0xA1, 1, 0xFF)
    bus.write(0x20, 1, 0x11)          # ICW1: edge, cascade, ICW4 needed
    bus.write(0x21, 1, master_base)   # ICW2
    bus.write(0x21, 1, 0x04)          # ICW3: slave on IR2
    bus.write(0x21, 1, icw4)          # ICW4: 8086 mode
    bus.write(0xA0, 1, 0x11)
    bus.write(0xA1, 1, slave_base)
    bus.write(0xA1, 1, 0x02)          # ICW3: slave id 2
    bus.write(0xA1, 1, icw4)
    bus.write(0x21, 1, 0x00)          # OCW1: unmask all
    bus.write(0xA1, 1, 0x00)


@pytest.fixture
def wakes():
    return []


@pytest.fixture
def pic(wakes):
    return PicPair(on_interrupt=lambda: wakes.append(1))


@pytest.fixture
def bus(pic):
    b = PortBus()
    pic.register(b)
    return b


def pulse(pic, line):
    pic.set_irq(line, 1)
    pic.set_irq(line, 0)


def eoi_master(bus):
    bus.write(0x20, 1, 0x20)


def read_isr(bus, port=0x20):
    bus.write(port, 1, 0x0B)
    v = bus.read(port, 1)
    bus.write(port, 1, 0x0A)
    return v


def test_imr_reads_back_linux_probe(bus):
    bus.write(0x21, 1, 0xFF)
    assert bus.read(0x21, 1) == 0xFF
    bus.write(0xA1, 1, 0xA5)
    assert bus.read(0xA1, 1) == 0xA5


def test_init_sequence_sets_vectors(pic, bus):
    remap(bus)
    assert pic.master.vector_base == 0x20 and pic.slave.vector_base == 0x28
    assert bus.read(0x21, 1) == 0 and bus.read(0xA1, 1) == 0
    pulse(pic, 0)
    assert pic.pending()
    assert pic.acknowledge() == 0x20
    assert not pic.pending()


def test_icw2_low_bits_ignored(pic, bus):
    remap(bus, master_base=0x23)
    pulse(pic, 1)
    assert pic.acknowledge() == 0x21


def test_single_mode_without_icw4(pic, bus):
    bus.write(0x20, 1, 0x12)          # SNGL, no IC4
    bus.write(0x21, 1, 0x40)
    bus.write(0x21, 1, 0xFD)          # now OCW1 (no ICW3/ICW4 expected)
    assert bus.read(0x21, 1) == 0xFD
    pulse(pic, 1)
    assert pic.acknowledge() == 0x41


def test_mask_blocks_and_unmask_delivers(pic, bus):
    remap(bus)
    bus.write(0x21, 1, 0x01)
    pulse(pic, 0)
    assert not pic.pending()
    assert read_isr(bus) == 0
    assert bus.read(0x20, 1) == 0x01   # IRR still has it
    bus.write(0x21, 1, 0x00)
    assert pic.pending()
    assert pic.acknowledge() == 0x20


def test_priority_and_nesting(pic, bus):
    remap(bus)
    pulse(pic, 4)
    pulse(pic, 1)
    assert pic.acknowledge() == 0x21   # IRQ1 outranks IRQ4
    assert not pic.pending()           # IRQ4 waits: IRQ1 in service
    pulse(pic, 0)
    assert pic.pending()               # IRQ0 may nest above IRQ1
    assert pic.acknowledge() == 0x20
    assert read_isr(bus) == 0x03
    eoi_master(bus)                    # non-specific: clears the highest (IRQ0)
    assert read_isr(bus) == 0x02
    assert not pic.pending()
    eoi_master(bus)
    assert pic.pending()
    assert pic.acknowledge() == 0x24


def test_specific_eoi(pic, bus):
    remap(bus)
    pulse(pic, 3)
    pulse(pic, 5)
    pic.acknowledge()
    bus.write(0x20, 1, 0x60 | 3)
    assert read_isr(bus) == 0
    assert pic.acknowledge() == 0x25
    bus.write(0x20, 1, 0x60 | 1)       # EOI for a level not in service: no effect
    assert read_isr(bus) == 0x20


def test_ocw3_reads_irr_and_isr(pic, bus):
    remap(bus)
    bus.write(0x21, 1, 0xFF)
    pulse(pic, 6)
    assert bus.read(0x20, 1) == 0x40   # IRR is the default after init
    bus.write(0x20, 1, 0x0B)
    assert bus.read(0x20, 1) == 0x00   # ISR
    bus.write(0x20, 1, 0x08)           # OCW3 without RR: selection kept
    assert bus.read(0x20, 1) == 0x00
    bus.write(0x20, 1, 0x0A)
    assert bus.read(0x20, 1) == 0x40


def test_slave_cascade_and_linux_eoi(pic, bus):
    remap(bus)
    pulse(pic, 12)
    assert pic.pending()
    assert pic.acknowledge() == 0x2C
    assert read_isr(bus) == 0x04
    assert read_isr(bus, 0xA0) == 0x10
    pulse(pic, 14)                     # lower than 12 inside the slave
    assert not pic.pending()
    bus.write(0xA0, 1, 0x60 | 4)       # mask_and_ack_8259A: specific EOI slave
    bus.write(0x20, 1, 0x60 | 2)       # then cascade on the master
    assert pic.pending()
    assert pic.acknowledge() == 0x2E
    assert pic.delivered[12] == 1 and pic.delivered[14] == 1


def test_slave_irq_blocked_by_higher_master_irq(pic, bus):
    remap(bus)
    pulse(pic, 1)
    pic.acknowledge()
    pulse(pic, 8)
    assert not pic.pending()
    eoi_master(bus)
    assert pic.acknowledge() == 0x28


def test_master_irq_nests_above_slave(pic, bus):
    remap(bus)
    pulse(pic, 9)
    assert pic.acknowledge() == 0x29
    pulse(pic, 0)
    assert pic.acknowledge() == 0x20
    pulse(pic, 3)
    assert not pic.pending()           # IR3 below the cascade in service


def test_spurious_irq7_when_request_vanishes(pic, bus):
    remap(bus)
    bus.write(0x4D0, 1, 0x20)          # IRQ5 level-triggered
    pic.set_irq(5, 1)
    assert pic.pending()
    pic.set_irq(5, 0)                  # withdrawn before INTA
    assert not pic.pending()
    assert pic.acknowledge() == 0x27
    assert read_isr(bus) == 0          # spurious: no ISR bit
    assert pic.spurious == 1


def test_spurious_irq15_sets_master_isr2(pic, bus):
    remap(bus)
    pulse(pic, 10)
    bus.write(0xA1, 1, 0x04)           # slave masks IRQ10 after master latched IR2
    assert pic.acknowledge() == 0x2F
    assert read_isr(bus) == 0x04       # Linux EOIs the master for spurious 15
    assert read_isr(bus, 0xA0) == 0


def test_acknowledge_with_nothing_pending_is_spurious_7(pic, bus):
    remap(bus)
    assert pic.acknowledge() == 0x27


def test_level_triggered_reasserts_after_eoi(pic, bus):
    remap(bus)
    bus.write(0x4D1, 1, 0x08)          # IRQ11 level
    assert bus.read(0x4D1, 1) == 0x08
    pic.set_irq(11, 1)
    assert pic.acknowledge() == 0x2B
    bus.write(0xA0, 1, 0x20)
    bus.write(0x20, 1, 0x20)
    assert pic.pending()               # line still high
    assert pic.acknowledge() == 0x2B
    pic.set_irq(11, 0)
    bus.write(0xA0, 1, 0x20)
    bus.write(0x20, 1, 0x20)
    assert not pic.pending()


def test_ltim_makes_all_lines_level(pic, bus):
    bus.write(0x20, 1, 0x19)           # ICW1 with LTIM
    bus.write(0x21, 1, 0x20)
    bus.write(0x21, 1, 0x04)
    bus.write(0x21, 1, 0x01)
    bus.write(0x21, 1, 0x00)
    pic.set_irq(3, 1)
    assert pic.acknowledge() == 0x23
    eoi_master(bus)
    assert pic.acknowledge() == 0x23


def test_elcr_reserved_bits(bus):
    bus.write(0x4D0, 2, 0xFFFF)
    assert bus.read(0x4D0, 1) == 0xF8  # IRQ0-2 always edge
    assert bus.read(0x4D1, 1) == 0xDE  # IRQ8, 13 always edge


def test_edge_is_latched_once_and_needs_a_new_edge(pic, bus):
    remap(bus)
    pic.set_irq(3, 1)
    pic.set_irq(3, 1)                  # held high: still one request
    assert pic.acknowledge() == 0x23
    eoi_master(bus)
    assert not pic.pending()
    pic.set_irq(3, 0)
    pic.set_irq(3, 1)
    assert pic.acknowledge() == 0x23


def test_icw1_forgets_pending_edges(pic, bus):
    remap(bus)
    bus.write(0x21, 1, 0xFF)
    pulse(pic, 4)
    remap(bus)
    assert not pic.pending()


def test_auto_eoi(pic, bus):
    remap(bus, icw4=0x03)
    pulse(pic, 2 + 1)
    assert pic.acknowledge() == 0x23
    assert read_isr(bus) == 0
    pulse(pic, 4)
    assert pic.acknowledge() == 0x24   # nothing in service blocks it


def test_rotate_on_nonspecific_eoi(pic, bus):
    remap(bus)
    pulse(pic, 0)
    assert pic.acknowledge() == 0x20
    bus.write(0x20, 1, 0xA0)           # rotate: IRQ0 becomes lowest
    pulse(pic, 0)
    pulse(pic, 5)
    assert pic.acknowledge() == 0x25


def test_set_priority_command(pic, bus):
    remap(bus)
    bus.write(0x20, 1, 0xC0 | 4)       # IR4 lowest, IR5 highest
    for line in (0, 4, 6):
        pulse(pic, line)
    assert pic.acknowledge() == 0x26
    bus.write(0x20, 1, 0x60 | 6)
    assert pic.acknowledge() == 0x20
    bus.write(0x20, 1, 0x60 | 0)
    assert pic.acknowledge() == 0x24


def test_rotate_in_auto_eoi(pic, bus):
    remap(bus, icw4=0x03)
    bus.write(0x20, 1, 0x80)
    pulse(pic, 1)
    assert pic.acknowledge() == 0x21
    pulse(pic, 1)
    pulse(pic, 3)
    assert pic.acknowledge() == 0x23   # IR1 rotated to lowest


def test_special_mask_mode(pic, bus):
    remap(bus)
    pulse(pic, 2 + 1)
    assert pic.acknowledge() == 0x23
    pulse(pic, 5)
    assert not pic.pending()
    bus.write(0x21, 1, 0x08)           # mask the level in service...
    bus.write(0x20, 1, 0x68)           # ...and enter special mask mode
    assert pic.pending()               # lower priority now allowed
    assert pic.acknowledge() == 0x25
    bus.write(0x20, 1, 0x48)           # leave special mask mode


def test_poll_command(pic, bus):
    remap(bus)
    bus.write(0x21, 1, 0x00)
    pulse(pic, 6)
    bus.write(0x20, 1, 0x0C)           # OCW3 poll
    assert bus.read(0x20, 1) == 0x86
    assert read_isr(bus) == 0x40
    bus.write(0x20, 1, 0x0C)
    assert bus.read(0x20, 1) == 0x00


def test_on_interrupt_called_on_rising_int(pic, bus, wakes):
    remap(bus)
    pulse(pic, 1)
    pulse(pic, 3)
    assert len(wakes) == 1
    pic.acknowledge()
    eoi_master(bus)
    assert len(wakes) == 2             # IRQ3 now raises INT again


def test_irq_line_callable(pic, bus):
    remap(bus)
    irq4 = pic.irq_line(4)
    irq4(1)
    assert pic.acknowledge() == 0x24
    with pytest.raises(ValueError):
        pic.irq_line(16)


def test_bad_inputs_are_defined(pic, bus):
    remap(bus)
    assert bus.read(0x20, 2) & 0xFF00 == 0
    bus.write(0x20, 4, 0)              # byte 0 OCW2 no-op, byte 1 OCW1 = 0
    assert bus.read(0x21, 1) == 0
    assert bus.read(0x20, 4) >> 16 == 0xFFFF
    bus.write(0x20, 1, 0x40)           # OCW2 no-op
    bus.write(0x20, 1, 0x20)           # EOI with nothing in service
    assert read_isr(bus) == 0
