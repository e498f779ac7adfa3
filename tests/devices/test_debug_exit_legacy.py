import pytest

from ringvisor.devices.debug_exit import DebugExit
from ringvisor.devices.legacy import IGNORED_PORTS, register_ignored
from ringvisor.devices.uart16550 import Uart16550
from ringvisor.machine.bus import PortBus


class Stop(Exception):
    pass


def test_debug_exit_status_is_the_value_itself():
    seen = []
    dev = DebugExit(on_exit=seen.append)
    dev.io_write(0, 1, 0)
    dev.io_write(0, 1, 0x1FF)                 # masked to the access size
    dev.io_write(0, 2, 0x1234)
    dev.io_write(0, 4, 0xDEADBEEF)
    assert seen == [0, 0xFF, 0x1234, 0xDEADBEEF]


def test_debug_exit_reads_all_ones():
    dev = DebugExit(on_exit=lambda s: None)
    assert dev.io_read(0, 1) == 0xFF
    assert dev.io_read(0, 2) == 0xFFFF
    assert dev.io_read(0, 4) == 0xFFFFFFFF


def test_debug_exit_lets_on_exit_unwind():
    def stop(status):
        raise Stop(status)
    bus = PortBus()
    bus.register(0xF4, 1, DebugExit(on_exit=stop), "debug-exit")
    with pytest.raises(Stop) as e:
        bus.write(0xF4, 1, 3)
    assert e.value.args == (3,)


def test_table_has_no_internal_overlap():
    seen = {}
    for entry in IGNORED_PORTS:
        for p in range(entry.base, entry.base + entry.length):
            assert p not in seen, f"{p:#x} in {entry.name} and {seen[p]}"
            seen[p] = entry.name


def test_register_ignored_skips_claimed_ports():
    bus = PortBus()
    bus.register(0x3F8, 8, Uart16550(), "uart")
    bus.register(0xE9, 1, DebugExit(lambda s: None), "debugcon")
    register_ignored(bus)
    assert bus.name_of(0x3F8) == "uart"
    assert bus.name_of(0x80) == "POST diagnostic port"
    assert bus.name_of(0x2F8) == "COM2"
    assert bus.read(0x80, 1) == 0xFF
    bus.write(0x80, 1, 0x12)
    bus.read(0x71, 1)
    assert not bus.unknown
    bus.read(0x1234, 1)
    assert bus.unknown


def test_register_ignored_splits_a_partly_claimed_range():
    bus = PortBus()
    bus.register(0x3C4, 2, Uart16550(), "odd device")
    listed = register_ignored(bus)
    vga = [e for e in listed if e.name == "VGA registers"]
    assert [(e.base, e.length) for e in vga] == [(0x3C0, 4), (0x3C6, 0x1A)]


def test_register_ignored_exclude():
    bus = PortBus()
    register_ignored(bus, exclude=[(0x20, 2), (0xA0, 2), (0x40, 4), (0x4D0, 2)])
    assert bus.name_of(0x20) == "unassigned"
    assert bus.name_of(0x43) == "unassigned"
    bus.register(0x20, 2, Uart16550(), "pic")    # no ConfigError: still free


def test_register_ignored_twice_is_harmless():
    bus = PortBus()
    register_ignored(bus)
    assert register_ignored(bus) == []
