"""The local APIC timer (SDM vol. 3A 10.5.4) in virtual time."""
import pytest

from ringvisor.devices.lapic import Reg
from lapic_rig import Clock, LVT_TIMER, MASKED, enabled, rd, wr


# -- the timer (SDM 10.5.4) --------------------------------------------------------------------

@pytest.mark.parametrize("dcr, divisor", [(0x0, 2), (0x1, 4), (0x2, 8), (0x3, 16), (0x8, 32),
                                           (0x9, 64), (0xA, 128), (0xB, 1)])
def test_timer_divide_configuration(dcr, divisor):
    clock = Clock()
    apic = enabled(clock=clock)
    wr(apic, Reg.TIMER_DIVIDE, dcr)
    wr(apic, LVT_TIMER, 0x40)
    wr(apic, Reg.TIMER_INITIAL, 100)
    assert apic.next_event_ns() == 100 * divisor * 10       # 100 MHz bus clock
    clock.ns = 10 * divisor * 30
    assert rd(apic, Reg.TIMER_CURRENT) == 70


def test_one_shot_timer_fires_once_at_the_exact_count():
    clock = Clock()
    apic = enabled(clock=clock)
    wr(apic, Reg.TIMER_DIVIDE, 0xB)
    wr(apic, LVT_TIMER, 0x40)
    wr(apic, Reg.TIMER_INITIAL, 1000)
    apic.advance_to(9_999)
    assert not apic.pending()
    clock.ns = 9_999
    assert rd(apic, Reg.TIMER_CURRENT) == 1
    apic.advance_to(10_000)
    assert apic.acknowledge() == 0x40
    clock.ns = 50_000
    apic.advance_to(50_000)
    assert rd(apic, Reg.TIMER_CURRENT) == 0
    assert apic.next_event_ns() is None and apic.stats.timer_expiries == 1


def test_periodic_timer_period_in_virtual_time_and_coalescing():
    clock = Clock()
    apic = enabled(clock=clock)
    wr(apic, Reg.TIMER_DIVIDE, 0x3)                          # divide by 16
    wr(apic, LVT_TIMER, 1 << 17 | 0x41)
    wr(apic, Reg.TIMER_INITIAL, 625)                         # 625 * 16 * 10 ns = 100 us
    fired = []
    for step in range(1, 11):
        t = apic.next_event_ns()
        assert t == step * 100_000
        clock.ns = t
        apic.advance_to(t)
        fired.append(apic.acknowledge())
        wr(apic, Reg.EOI, 0)
    assert fired == [0x41] * 10
    clock.ns = 1_000_000 + 350_000                           # three and a half periods later
    apic.advance_to(clock.ns)
    assert apic.stats.timer_expiries == 13 and apic.stats.timer_coalesced == 2
    assert rd(apic, Reg.TIMER_CURRENT) == 625 - (50_000 // 160)


def test_zero_initial_count_stops_the_timer_and_masked_timer_still_counts():
    clock = Clock()
    apic = enabled(clock=clock)
    wr(apic, Reg.TIMER_DIVIDE, 0xB)
    wr(apic, LVT_TIMER, MASKED | 0x40)
    wr(apic, Reg.TIMER_INITIAL, 100)
    clock.ns = 500
    assert rd(apic, Reg.TIMER_CURRENT) == 50
    apic.advance_to(2000)
    assert not apic.pending() and apic.stats.timer_expiries == 1
    wr(apic, Reg.TIMER_INITIAL, 100)
    wr(apic, Reg.TIMER_INITIAL, 0)
    assert apic.next_event_ns() is None


def test_tsc_deadline_mode():
    clock = Clock()
    apic = enabled(clock=clock)                              # TSC = ns / 10
    wr(apic, LVT_TIMER, 2 << 17 | 0x42)
    wr(apic, Reg.TIMER_INITIAL, 1234)                        # ignored in this mode
    assert rd(apic, Reg.TIMER_INITIAL) == 0 and apic.next_event_ns() is None
    clock.ns = 1000
    apic.write_msr(0x6E0, 500)                               # TSC 100 now: 400 ticks ahead
    assert apic.read_msr(0x6E0) == 500 and apic.next_event_ns() == 5000
    clock.ns = 5000
    apic.advance_to(5000)
    assert apic.acknowledge() == 0x42
    assert apic.read_msr(0x6E0) == 0                         # cleared once it fired
    wr(apic, Reg.EOI, 0)
    apic.write_msr(0x6E0, 10)                                # already past: fires at once
    assert apic.pending()
    apic.write_msr(0x6E0, 10**6)
    wr(apic, LVT_TIMER, 0x42)                                # leaving the mode disarms
    assert apic.next_event_ns() is None and apic.read_msr(0x6E0) == 0
    apic.write_msr(0x6E0, 10**6)                             # ignored outside the mode
    assert apic.next_event_ns() is None


def test_tsc_deadline_not_offered_when_cpuid_does_not_report_it():
    apic = enabled(tsc_deadline=False)
    wr(apic, LVT_TIMER, 2 << 17 | 0x42)
    assert rd(apic, LVT_TIMER) == 0x42
    assert apic.read_msr(0x6E0) is None and not apic.write_msr(0x6E0, 1)


def test_timer_mode_changes_keep_the_count_going():
    """The sequence of kvm-unit-tests' x86/apic.c test_apic_change_mode."""
    clock = Clock()
    apic = enabled(clock=clock)
    wr(apic, Reg.TIMER_DIVIDE, 0xB)
    tmict = 1000
    wr(apic, Reg.TIMER_INITIAL, tmict)
    wr(apic, LVT_TIMER, 1 << 17 | 0x40)                      # to periodic
    assert rd(apic, Reg.TIMER_INITIAL) == tmict
    wr(apic, LVT_TIMER, 0x40)                                # one-shot, restarted
    wr(apic, Reg.TIMER_INITIAL, tmict)
    assert rd(apic, Reg.TIMER_CURRENT) == tmict
    clock.ns += tmict * 10
    assert rd(apic, Reg.TIMER_CURRENT) == 0                  # one-shot reached 0
    wr(apic, Reg.TIMER_INITIAL, tmict)
    clock.ns += 600 * 10
    wr(apic, LVT_TIMER, 1 << 17 | 0x40)                      # one-shot -> periodic mid-count
    assert rd(apic, Reg.TIMER_CURRENT) == 400                # not reset
    clock.ns += 400 * 10 + 100 * 10
    assert rd(apic, Reg.TIMER_CURRENT) == 900                # wrapped to the initial count
    clock.ns += 500 * 10
    wr(apic, LVT_TIMER, 0x40)                                # periodic -> one-shot mid-count
    assert rd(apic, Reg.TIMER_CURRENT) == 400
    clock.ns += 400 * 10
    assert rd(apic, Reg.TIMER_CURRENT) == 0
    clock.ns += 10_000
    assert rd(apic, Reg.TIMER_CURRENT) == 0                  # and stays there
    wr(apic, LVT_TIMER, 1 << 17 | 0x40)                      # expired one-shot -> periodic
    clock.ns += 10_000
    assert rd(apic, Reg.TIMER_CURRENT) == 0                  # stays at zero


def test_tsc_deadline_at_the_present_tsc_fires_at_once():
    """kvm-unit-tests: wrmsr(TSCDEADLINE, rdmsr(TSC)); the next instruction sees it."""
    clock = Clock()
    clock.ns = 12_340
    apic = enabled(clock=clock)
    wr(apic, LVT_TIMER, 2 << 17 | 0xEF)
    apic.write_msr(0x6E0, apic.tsc())
    assert apic.acknowledge() == 0xEF and apic.read_msr(0x6E0) == 0
