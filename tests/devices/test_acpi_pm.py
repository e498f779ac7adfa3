"""The ACPI PM1 registers and PM timer (ACPI spec 4.8) on virtual time."""
from ringvisor.devices.acpi_pm import (
    PM_TIMER_HZ, PWRBTN_STS, SCI_EN, TMR_STS, AcpiPm, ns_to_ticks, ticks_to_ns,
)
from ringvisor.machine.bus import PortBus

BASE = 0x600


class Clock:
    ns = 0

    def __call__(self):
        return self.ns


def rig():
    clock, sci, sleeps = Clock(), [], []
    pm = AcpiPm(clock=clock, sci=sci.append, on_sleep=sleeps.append)
    ports = PortBus()
    pm.register(ports, BASE)
    return clock, pm, ports, sci, sleeps


def test_timer_counts_at_3_579545_mhz_in_24_bits():
    clock, pm, ports, _, _ = rig()
    assert ports.read(BASE + 8, 4) == 0
    clock.ns = 1_000_000_000
    assert ports.read(BASE + 8, 4) == PM_TIMER_HZ & 0xFFFFFF
    clock.ns = ticks_to_ns(0x1234567)
    assert ports.read(BASE + 8, 4) == 0x234567                 # wrapped, bits 31:24 read 0
    assert ns_to_ticks(ticks_to_ns(12345)) == 12345


def test_one_second_measured_with_the_timer_as_linux_calibrates():
    clock, pm, ports, _, _ = rig()
    clock.ns = 5_000_000
    t0 = ports.read(BASE + 8, 4)
    clock.ns += 100_000_000                                   # 100 ms of virtual time
    t1 = ports.read(BASE + 8, 4)
    assert (t1 - t0) & 0xFFFFFF in (357954, 357955)


def test_tmr_sts_sets_when_bit_23_changes_and_raises_the_sci_when_enabled():
    clock, pm, ports, sci, _ = rig()
    ports.write(BASE + 2, 2, TMR_STS)                          # TMR_EN
    due = pm.next_event_ns()
    assert due == ticks_to_ns(1 << 23)                         # about 2.34 s
    clock.ns = due - 1
    ports.read(BASE + 8, 4)
    assert not ports.read(BASE, 2) & TMR_STS
    clock.ns = due
    assert ports.read(BASE, 2) & TMR_STS
    assert sci == [1]
    assert pm.next_event_ns() is None                          # already pending
    ports.write(BASE, 2, TMR_STS)                              # write 1 to clear
    assert not ports.read(BASE, 2) & TMR_STS and sci == [1, 0]
    assert pm.next_event_ns() == ticks_to_ns(2 << 23)


def test_status_without_enable_does_not_raise_the_sci():
    clock, pm, ports, sci, _ = rig()
    clock.ns = ticks_to_ns(1 << 23)
    assert ports.read(BASE, 2) & TMR_STS
    assert sci == [] and pm.next_event_ns() is None


def test_power_button_and_acpi_mode():
    clock, pm, ports, sci, _ = rig()
    assert ports.read(BASE + 4, 2) & SCI_EN                    # no SMI_CMD: always ACPI mode
    ports.write(BASE + 4, 2, 0)
    assert ports.read(BASE + 4, 2) & SCI_EN
    ports.write(BASE + 2, 2, PWRBTN_STS)
    pm.press_power_button()
    assert ports.read(BASE, 2) & PWRBTN_STS and sci == [1]


def test_slp_en_with_s5_type_asks_the_machine_to_power_off():
    clock, pm, ports, _, sleeps = rig()
    ports.write(BASE + 4, 2, 5 << 10)                          # SLP_TYP alone: nothing yet
    assert sleeps == [] and ports.read(BASE + 4, 2) == (5 << 10) | SCI_EN
    ports.write(BASE + 4, 2, 0 << 10 | 1 << 13)                # _S5: SLP_TYP 0, SLP_EN
    assert sleeps == [0]
    assert not ports.read(BASE + 4, 2) & (1 << 13)             # SLP_EN is write-only


def test_ports_between_control_and_timer_are_not_claimed():
    clock, pm, ports, _, _ = rig()
    assert ports.name_of(BASE + 6) == "unassigned"
    assert ports.name_of(BASE + 8) == "ACPI PM timer"
