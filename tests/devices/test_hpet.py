"""The HPET (IA-PC HPET specification 1.0a) on virtual time."""
from ringvisor.devices.hpet import Hpet

CAP, CONFIG, STATUS, COUNTER = 0x000, 0x010, 0x020, 0x0F0
ENABLE, LEGACY = 1, 2
LEVEL, INT_ENB, PERIODIC, VAL_SET, MODE32 = 1 << 1, 1 << 2, 1 << 3, 1 << 6, 1 << 8


def t_config(n):
    return 0x100 + 0x20 * n


def t_cmp(n):
    return 0x108 + 0x20 * n


class Rig:
    def __init__(self):
        self.ns = 0
        self.events = []
        self.legacy = []
        self.hpet = Hpet(clock=lambda: self.ns,
                         ioapic_irq=lambda pin, level: self.events.append(("gsi", pin, level)),
                         isa_irq=lambda irq, level: self.events.append(("isa", irq, level)),
                         on_legacy=self.legacy.append)

    def read64(self, reg):
        return self.hpet.io_read(reg, 4) | self.hpet.io_read(reg + 4, 4) << 32

    def write64(self, reg, value):
        self.hpet.io_write(reg, 4, value & 0xFFFFFFFF)
        self.hpet.io_write(reg + 4, 4, value >> 32)

    def at(self, ns):
        self.ns = ns
        self.hpet.advance_to(ns)


def test_capabilities_match_the_acpi_table():
    rig = Rig()
    cap = rig.read64(CAP)
    assert cap & 0xFFFFFFFF == 0x8086A201                    # boot/acpi.py HPET_BLOCK_ID
    assert cap >> 32 == 10_000_000                           # femtoseconds per tick: 100 MHz
    assert rig.read64(t_config(0)) & (1 << 4) and not rig.read64(t_config(2)) & (1 << 4)
    assert rig.read64(t_config(0)) >> 32 == 0x00F00000       # routes to pins 20-23


def test_main_counter_runs_only_when_enabled_and_is_writable_while_halted():
    rig = Rig()
    rig.ns = 1000
    assert rig.read64(COUNTER) == 0
    rig.write64(COUNTER, 0x1_0000_0000)
    rig.write64(CONFIG, ENABLE)
    rig.ns = 1000 + 12_345 * 10
    assert rig.read64(COUNTER) == 0x1_0000_0000 + 12_345
    rig.write64(COUNTER, 5)                                  # ignored while running
    assert rig.read64(COUNTER) == 0x1_0000_0000 + 12_345
    rig.write64(CONFIG, 0)
    rig.ns += 10**6
    assert rig.read64(COUNTER) == 0x1_0000_0000 + 12_345     # halted


def test_one_shot_edge_interrupt_through_the_ioapic_route():
    rig = Rig()
    rig.write64(t_config(2), INT_ENB | 21 << 9)
    rig.write64(t_cmp(2), 1000)
    rig.write64(CONFIG, ENABLE)
    assert rig.hpet.next_event_ns() == 10_000
    rig.at(9_999)
    assert rig.events == []
    rig.at(10_000)
    assert rig.events == [("gsi", 21, 1), ("gsi", 21, 0)]
    rig.at(10**7)
    assert len(rig.events) == 2
    assert rig.hpet.next_event_ns() is None                  # 64-bit: matches again only after a wrap


def test_periodic_timer_and_value_set_as_linux_programs_it():
    """Linux's hpet_set_periodic: 32-bit mode, VAL_SET, comparator = now + delta,
    then the period (VAL_SET has cleared itself)."""
    rig = Rig()
    rig.write64(CONFIG, ENABLE)
    rig.at(2_000)                                            # counter 200
    rig.hpet.io_write(t_config(0), 4, INT_ENB | PERIODIC | VAL_SET | MODE32 | 20 << 9)
    rig.hpet.io_write(t_cmp(0), 4, 200 + 1000)
    rig.hpet.io_write(t_cmp(0), 4, 1000)
    assert not rig.read64(t_config(0)) & VAL_SET
    fires = []
    for _ in range(4):
        t = rig.hpet.next_event_ns()
        fires.append(t)
        rig.at(t)
    assert fires == [12_000, 22_000, 32_000, 42_000]
    assert rig.read64(t_cmp(0)) == 200 + 5000
    rig.at(82_000)                                           # four more periods at once
    assert rig.hpet.fired[0] == 8
    assert rig.events.count(("gsi", 20, 1)) == 5             # one pulse per advance


def test_level_interrupt_holds_until_status_is_cleared():
    rig = Rig()
    rig.write64(t_config(1), INT_ENB | LEVEL | 22 << 9)
    rig.write64(t_cmp(1), 100)
    rig.write64(CONFIG, ENABLE)
    rig.at(1_000)
    assert rig.read64(STATUS) == 0b10 and rig.events == [("gsi", 22, 1)]
    rig.write64(STATUS, 0b01)                                # another timer's bit: nothing
    assert rig.read64(STATUS) == 0b10
    rig.write64(STATUS, 0b10)
    assert rig.read64(STATUS) == 0 and rig.events[-1] == ("gsi", 22, 0)


def test_disabled_interrupts_and_unroutable_pins_deliver_nothing():
    rig = Rig()
    rig.write64(t_config(0), 20 << 9)                        # INT_ENB clear
    rig.write64(t_config(1), INT_ENB | 5 << 9)               # pin 5 not in the capability
    rig.write64(t_cmp(0), 10)
    rig.write64(t_cmp(1), 10)
    rig.write64(CONFIG, ENABLE)
    rig.at(10_000)
    assert rig.events == [] and rig.hpet.fired[:2] == [1, 1]


def test_32_bit_mode_wraps_the_comparator():
    rig = Rig()
    rig.write64(t_config(2), INT_ENB | MODE32 | 23 << 9)
    rig.write64(COUNTER, 0xFFFF_FFF0)
    rig.write64(t_cmp(2), 0x10)                              # the low half, after the wrap
    rig.write64(CONFIG, ENABLE)
    assert rig.hpet.next_event_ns() == 0x20 * 10
    rig.at(0x20 * 10)
    assert ("gsi", 23, 1) in rig.events


def test_legacy_replacement_routes_timers_0_and_1_to_irq_0_and_8():
    rig = Rig()
    rig.write64(CONFIG, LEGACY)
    assert rig.legacy == [True]
    rig.write64(t_config(0), INT_ENB)
    rig.write64(t_config(1), INT_ENB)
    rig.write64(t_cmp(0), 10)
    rig.write64(t_cmp(1), 20)
    rig.write64(CONFIG, LEGACY | ENABLE)
    rig.at(1000)
    assert rig.events == [("isa", 0, 1), ("isa", 0, 0), ("isa", 8, 1), ("isa", 8, 0)]
    rig.write64(CONFIG, ENABLE)
    assert rig.legacy == [True, False]
