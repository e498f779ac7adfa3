import pytest

from ringvisor.errors import ConfigError
from ringvisor.machine.bus import MmioBus, PortBus


class Recorder:
    def __init__(self):
        self.log = []

    def io_read(self, offset, size):
        self.log.append(("r", offset, size))
        return 0x40 + offset

    def io_write(self, offset, size, value):
        self.log.append(("w", offset, size, value))


def test_port_dispatch_uses_offsets_relative_to_the_base():
    bus, dev = PortBus(), Recorder()
    bus.register(0x3F8, 8, dev, "uart")
    bus.write(0x3FB, 1, 0x80)
    assert bus.read(0x3FD, 1) == 0x45
    assert dev.log == [("w", 3, 1, 0x80), ("r", 5, 1)]
    assert bus.write_counts[0x3FB] == 1 and bus.read_counts[0x3FD] == 1


@pytest.mark.parametrize("base,length", [(0x3F8, 1), (0x3F0, 9), (0x3FF, 4), (0x3F0, 0x100)])
def test_overlapping_port_ranges_are_refused(base, length):
    bus = PortBus()
    bus.register(0x3F8, 8, Recorder(), "uart")
    with pytest.raises(ConfigError, match="overlap"):
        bus.register(base, length, Recorder(), "other")


@pytest.mark.parametrize("base,length", [(-1, 1), (0xFFFF, 2), (0x10, 0)])
def test_port_ranges_outside_the_port_space_are_refused(base, length):
    with pytest.raises(ConfigError):
        PortBus().register(base, length, Recorder(), "bad")


def test_ignored_ports_are_named_and_unassigned_ones_counted():
    bus = PortBus()
    bus.ignore(0x80, 1, "POST diagnostic")
    assert bus.read(0x80, 1) == 0xFF
    bus.write(0x80, 1, 0x12)
    assert bus.read(0x99, 2) == 0xFFFF and bus.read(0x99, 4) == 0xFFFFFFFF
    bus.write(0x99, 1, 0)
    assert bus.name_of(0x80) == "POST diagnostic" and bus.name_of(0x99) == "unassigned"
    assert dict(bus.unknown) == {("port", "read", 0x99): 2, ("port", "write", 0x99): 1}
    with pytest.raises(ConfigError, match="ignored"):
        bus.register(0x80, 1, Recorder(), "late")


def test_mmio_lookup_and_unassigned_reads():
    bus, a, b = MmioBus(), Recorder(), Recorder()
    bus.register(0xFEE00000, 0x1000, a, "lapic")
    bus.register(0xFEC00000, 0x20, b, "ioapic")
    assert bus.read(0xFEE00020, 4) == 0x60
    bus.write(0xFEC00010, 4, 7)
    assert a.log == [("r", 0x20, 4)] and b.log == [("w", 0x10, 4, 7)]
    assert bus.read(0xFEC00020, 4) == 0xFFFFFFFF
    assert bus.unknown[("mmio", "read", 0xFEC00020)] == 1
    with pytest.raises(ConfigError, match="overlaps"):
        bus.register(0xFEE00800, 0x1000, Recorder(), "x")
