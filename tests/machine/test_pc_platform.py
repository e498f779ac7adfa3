"""The soft platform with the APIC-era PC switched on (SoftPlatform(pc=...)),
driven as a CPU would drive it: bus accesses, virtual time, INTR/INTA.
Off by default: the 1990 PC stays what existing runs see."""
import struct

import pytest

from ringvisor.boot.pc_description import PcDescription
from ringvisor.devices.pit8254 import ticks_to_ns
from ringvisor.machine.bus import MmioBus, PortBus
from ringvisor.machine.memory import GuestMemory
from ringvisor.machine.soft_platform import NS_PER_INSTRUCTION, SoftPlatform

MiB = 1 << 20
LAPIC, IOAPIC, HPET = 0xFEE00000, 0xFEC00000, 0xFED00000


class Engine:
    """What the platform reads of the CPU: its instruction count and TSC."""

    def __init__(self):
        self.instructions = 0
        self.tsc_offset = 0

    def tsc(self):
        return self.instructions + self.tsc_offset


def platform(**desc):
    ports, mmio, memory = PortBus(), MmioBus(), GuestMemory(32 * MiB)
    p = SoftPlatform(ports, Engine(), pc=PcDescription(**desc), mmio=mmio, memory=memory,
                     memory_map=[(0, 0x9FC00, 1), (0x100000, 31 * MiB, 1)], cmdline=b"hello")
    return p, ports, mmio, memory


def init_pic(ports, base=0x20):
    for port, value in ((0x20, 0x11), (0x21, base), (0x21, 0x04), (0x21, 0x01),
                        (0xA0, 0x11), (0xA1, base + 8), (0xA1, 0x02), (0xA1, 0x01)):
        ports.write(port, 1, value)


def test_off_by_default():
    ports = PortBus()
    p = SoftPlatform(ports)
    assert p.pc is None
    assert ports.name_of(0x510) == "unassigned" and ports.name_of(0x608) == "unassigned"
    assert "pc" not in SoftPlatform(PortBus(), Engine()).statistics()


def test_devices_and_tables_are_where_the_tables_say():
    p, ports, mmio, memory = platform(cpus=2, hpet_base=HPET)
    assert memory.read(0xE0000, 8) == b"RSD PTR "
    assert memory.read(0x9FC00, 4) == b"_MP_"
    assert mmio.read(LAPIC + 0x20, 4) == 0                       # BSP's APIC ID
    p.pc.apic_bus.current = 1
    assert mmio.read(LAPIC + 0x20, 4) == 1 << 24
    mmio.write(IOAPIC, 4, 1)
    assert mmio.read(IOAPIC + 0x10, 4) == 0x00170020
    assert mmio.read(HPET, 4) == 0x8086A201
    ports.write(0x510, 2, 0)
    assert bytes(ports.read(0x511, 1) for _ in range(4)) == b"QEMU"
    ports.write(0x510, 2, 5)
    assert ports.read(0x511, 2) == 2                             # fw_cfg CPU count
    ports.write(0x510, 2, 0x15)
    assert bytes(ports.read(0x511, 1) for _ in range(6)) == b"hello\0"


def test_pm_timer_follows_the_cpu():
    p, ports, _, _ = platform()
    p.engine.instructions = 100_000_000                          # one virtual second
    assert ports.read(0x608, 4) == 3_579_545


def test_legacy_guest_still_gets_8259_interrupts_through_virtual_wire():
    p, ports, _, _ = platform()
    cpu = p.pc.interrupts
    init_pic(ports)
    ports.write(0x43, 1, 0x34)                                   # PIT channel 0, mode 2
    ports.write(0x40, 1, 0x9C)
    ports.write(0x40, 1, 0x2E)                                   # 11932: 100 Hz
    assert not cpu.pending()
    assert p.skip_to_next_event()
    assert cpu.pending() and cpu.acknowledge() == 0x20           # IRQ 0 from the 8259
    assert p.now_ns() == ticks_to_ns(11932)                      # the PIT's first edge


def test_ioapic_route_of_the_pit_is_pin_2():
    p, ports, mmio, _ = platform()
    cpu = p.pc.interrupts
    init_pic(ports)
    ports.write(0x21, 1, 0xFF)                                   # 8259 fully masked
    mmio.write(IOAPIC, 4, 0x10 + 2 * 2)
    mmio.write(IOAPIC + 0x10, 4, 0x30)                           # pin 2 -> vector 0x30, CPU 0
    ports.write(0x43, 1, 0x34)
    ports.write(0x40, 1, 0x00)
    ports.write(0x40, 1, 0x10)
    assert p.skip_to_next_event()
    assert cpu.pending() and cpu.acknowledge() == 0x30
    assert p.pc.ioapic.messages[2] == 1


def test_apic_timer_cuts_the_slice_and_wakes_a_halted_cpu():
    p, ports, mmio, _ = platform()
    cpu = p.pc.interrupts
    mmio.write(LAPIC + 0x3E0, 4, 0xB)                            # divide by 1
    mmio.write(LAPIC + 0x320, 4, 0x40)                           # one-shot, vector 0x40
    mmio.write(LAPIC + 0x380, 4, 5000)
    assert p.budget(200_000) == 5000                             # one count per instruction
    p.engine.instructions = 4999
    p.sync()
    assert not cpu.pending()
    assert p.skip_to_next_event()                                # halted: time jumps
    assert p.now_ns() == 5000 * NS_PER_INSTRUCTION and p.engine.tsc() == 5000
    assert cpu.acknowledge() == 0x40
    assert p.statistics()["pc"]["cpus"][0]["timer_expiries"] == 1


def test_acpi_soft_off_reaches_the_machine():
    p, ports, _, _ = platform()
    seen = []
    p.pc.on_power_off = lambda: seen.append("off")
    ports.write(0x604, 2, 1 << 13)                               # SLP_TYP 0 (\_S5) | SLP_EN
    assert seen == ["off"] and p.pc.power_off_requested


def test_resets_reach_the_machine():
    p, ports, _, _ = platform()
    seen = []
    p.pc.on_reset = seen.append
    ports.write(0xCF9, 1, 0x06)                                  # the FADT's reset register
    ports.write(0x92, 1, 0x03)
    assert seen == ["hard", "fast"] and p.pc.reset_requests == seen


def test_hpet_legacy_replacement_takes_irq_0_from_the_pit():
    p, ports, mmio, _ = platform(hpet_base=HPET)
    cpu = p.pc.interrupts
    init_pic(ports)
    ports.write(0x43, 1, 0x34)
    ports.write(0x40, 1, 0x9C)
    ports.write(0x40, 1, 0x2E)
    mmio.write(HPET + 0x010, 4, 0b10)                            # LEG_RT_CNF
    assert not p.pc.pit_connected
    assert p.skip_to_next_event()                                # the PIT's edge, disconnected
    assert not cpu.pending()
    mmio.write(HPET + 0x100, 4, 1 << 2)                          # timer 0: interrupts on
    mmio.write(HPET + 0x108, 4, 1000)                            # the counter starts at 0
    mmio.write(HPET + 0x10C, 4, 0)
    mmio.write(HPET + 0x010, 4, 0b11)
    assert p.skip_to_next_event()
    assert cpu.pending() and cpu.acknowledge() == 0x20


@pytest.mark.parametrize("cpus", [1, 4])
def test_fw_cfg_e820_matches_the_memory_map(cpus):
    p, ports, _, _ = platform(cpus=cpus)
    ports.write(0x510, 2, 0x19)
    count = int.from_bytes(bytes(ports.read(0x511, 1) for _ in range(4)), "big")
    entries = [bytes(ports.read(0x511, 1) for _ in range(64)) for _ in range(count)]
    names = {e[8:].rstrip(b"\0").decode(): struct.unpack(">IH", e[:6]) for e in entries}
    assert set(names) == {"etc/e820", "etc/acpi/rsdp", "etc/acpi/tables", "etc/table-loader"}
    ports.write(0x510, 2, names["etc/e820"][1])
    raw = bytes(ports.read(0x511, 1) for _ in range(40))
    assert struct.unpack("<QQIQQI", raw) == (0, 0x9FC00, 1, 0x100000, 31 * MiB, 1)
    assert len(p.pc.lapics) == cpus


def test_acpi_soft_off_ends_the_run_by_default():
    from ringvisor.exits import GuestStopped
    p, ports, mmio, memory = platform()
    with pytest.raises(GuestStopped) as stop:
        ports.write(0x604, 2, 1 << 13)                           # SLP_TYP 0 (\_S5) | SLP_EN
    assert stop.value.status == 0 and "S5" in stop.value.reason
