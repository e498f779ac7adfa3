"""The CMOS RTC against the MC146818A datasheet: register formats (BCD and
binary, 12 and 24 hours), the update cycle and UIP, SET, the divider,
periodic, alarm and update-ended interrupts on IRQ 8 through register C,
the NMI mask bit of the index port, and CMOS RAM."""
from __future__ import annotations

import calendar

import pytest

from ringvisor.devices import rtc_cmos as R

MS = 1_000_000
S = 1_000_000_000
# Saturday 2026-12-05 23:59:58.25 UTC.
T0 = calendar.timegm((2026, 12, 5, 23, 59, 58)) * S + 250 * MS


class Line:
    def __init__(self):
        self.level, self.rises = 0, 0

    def __call__(self, level):
        self.rises += level and not self.level
        self.level = level


@pytest.fixture
def line():
    return Line()


@pytest.fixture
def rtc(line):
    return R.CmosRtc(irq=line, ram_size=64 << 20, host_time_ns=T0)


def rd(rtc, reg):
    rtc.io_write(0, 1, reg)
    return rtc.io_read(1, 1)


def wr(rtc, reg, value):
    rtc.io_write(0, 1, reg)
    rtc.io_write(1, 1, value)


def clock(rtc):
    return [rd(rtc, r) for r in (R.YEAR, R.MONTH, R.DATE, R.DAY_OF_WEEK, R.HOURS, R.MINUTES, R.SECONDS)]


def test_power_on_time_is_the_host_utc_time_in_bcd_24_hour(rtc):
    assert clock(rtc) == [0x26, 0x12, 0x05, 7, 0x23, 0x59, 0x58]   # Saturday = 7
    assert rd(rtc, R.CENTURY) == 0x20
    assert rd(rtc, R.REG_D) == 0x80                                  # VRT
    assert rd(rtc, R.REG_B) == R.B_24H
    assert rd(rtc, R.REG_A) & 0x7F == 0x26                           # 32.768 kHz divider, 1024 Hz rate


def test_seconds_change_a_second_after_power_on_and_carry_through_the_calendar(rtc):
    rtc.advance_to(S - 1)
    assert rd(rtc, R.SECONDS) == 0x58
    rtc.advance_to(S)                                       # one virtual second after power-on
    assert rd(rtc, R.SECONDS) == 0x59
    rtc.advance_to(2 * S)                                   # midnight: new day, new weekday
    assert clock(rtc) == [0x26, 0x12, 0x06, 1, 0x00, 0x00, 0x00]


def test_year_end_and_leap_day():
    rtc = R.CmosRtc(host_time_ns=calendar.timegm((2099, 12, 31, 23, 59, 59)) * S)
    rtc.advance_to(S)
    assert clock(rtc)[:3] == [0x00, 0x01, 0x01] and rd(rtc, R.CENTURY) == 0x21
    rtc = R.CmosRtc(host_time_ns=calendar.timegm((2028, 2, 28, 23, 59, 59)) * S)
    rtc.advance_to(S)
    assert clock(rtc)[1:3] == [0x02, 0x29]


def test_uip_is_high_from_244us_before_the_update_to_its_end(rtc):
    update = S
    rtc.advance_to(update - R.UPDATE_NS - R.UIP_LEAD_NS - 1)
    assert not rd(rtc, R.REG_A) & R.A_UIP
    rtc.advance_to(update - R.UPDATE_NS - R.UIP_LEAD_NS)
    assert rd(rtc, R.REG_A) & R.A_UIP
    assert rd(rtc, R.SECONDS) == 0x58                              # not updated yet
    rtc.advance_to(update)
    assert not rd(rtc, R.REG_A) & R.A_UIP and rd(rtc, R.SECONDS) == 0x59


def test_binary_and_12_hour_modes_work_on_the_stored_bytes(rtc):
    wr(rtc, R.REG_B, R.B_SET | R.B_DM_BINARY)                      # binary, 12-hour, stopped
    for reg, value in ((R.YEAR, 26), (R.MONTH, 12), (R.DATE, 5),
                       (R.HOURS, 0x80 | 11), (R.MINUTES, 59), (R.SECONDS, 59)):   # 11:59:59 PM
        wr(rtc, reg, value)
    wr(rtc, R.REG_B, R.B_DM_BINARY)
    rtc.advance_to(S)
    assert (rd(rtc, R.HOURS), rd(rtc, R.MINUTES), rd(rtc, R.SECONDS)) == (12, 0, 0)   # 12 AM
    assert (rd(rtc, R.DATE), rd(rtc, R.DAY_OF_WEEK)) == (6, 1)
    wr(rtc, R.REG_B, R.B_SET | R.B_24H)                            # back to BCD 24-hour: no conversion
    assert rd(rtc, R.HOURS) == 12


def test_set_stops_updates_and_clears_uie_and_the_clock_resumes_a_second_later(rtc):
    wr(rtc, R.REG_B, R.B_24H | R.B_UIE)
    wr(rtc, R.REG_B, R.B_24H | R.B_UIE | R.B_SET)
    assert not rd(rtc, R.REG_B) & R.B_UIE
    wr(rtc, R.SECONDS, 0x10)
    rtc.advance_to(5 * S)
    assert rd(rtc, R.SECONDS) == 0x10 and not rd(rtc, R.REG_A) & R.A_UIP
    wr(rtc, R.REG_B, R.B_24H)
    rtc.advance_to(6 * S - 1)
    assert rd(rtc, R.SECONDS) == 0x10
    rtc.advance_to(6 * S)
    assert rd(rtc, R.SECONDS) == 0x11


def test_divider_reset_stops_the_clock_and_the_first_update_comes_500ms_after(rtc):
    wr(rtc, R.REG_A, 0x70 | 0x6)
    rtc.advance_to(3 * S)
    assert rd(rtc, R.SECONDS) == 0x58
    wr(rtc, R.REG_A, 0x26)
    rtc.advance_to(3 * S + 500 * MS)
    assert rd(rtc, R.SECONDS) == 0x59


def test_update_ended_interrupt_and_register_c_read_clears_it(rtc, line):
    rd(rtc, R.REG_C)
    wr(rtc, R.REG_B, R.B_24H | R.B_UIE)
    assert rtc.next_event_ns() == S
    rtc.advance_to(S)
    assert line.level == 1
    # PF is set too: the periodic divider runs (1024 Hz) whether or not PIE is on.
    assert rd(rtc, R.REG_C) == R.C_IRQF | R.C_UF | R.C_PF
    assert line.level == 0 and rd(rtc, R.REG_C) == 0


def test_update_flag_without_its_enable_raises_no_interrupt(rtc, line):
    rtc.advance_to(S)
    assert line.level == 0 and rd(rtc, R.REG_C) & (R.C_UF | R.C_IRQF) == R.C_UF
    assert rtc.next_event_ns() is None


def test_alarm_matches_and_dont_care_bytes(rtc, line):
    wr(rtc, R.SECONDS_ALARM, 0x02)
    wr(rtc, R.MINUTES_ALARM, 0xC0)                                 # any minute
    wr(rtc, R.HOURS_ALARM, 0xFF)                                   # any hour
    wr(rtc, R.REG_B, R.B_24H | R.B_AIE)
    rtc.advance_to(S + 2 * S)                               # 00:00:01: no match yet
    assert line.level == 0
    rd(rtc, R.REG_C)
    rtc.advance_to(S + 3 * S)                               # 00:00:02
    assert line.level == 1 and rd(rtc, R.REG_C) & (R.C_AF | R.C_IRQF) == R.C_AF | R.C_IRQF


@pytest.mark.parametrize("rs,period_ns", [(1, 3_906_250), (2, 7_812_500), (3, 122_070), (6, 976_562),
                                          (15, 500_000_000)])
def test_periodic_rates_of_the_datasheet_table(rs, period_ns):
    assert R.periodic_ns(rs) == period_ns
    assert R.periodic_ns(0) is None


def test_periodic_interrupt_at_the_selected_rate(rtc, line):
    wr(rtc, R.REG_A, 0x20 | 15)                                    # 2 Hz
    wr(rtc, R.REG_B, R.B_24H | R.B_PIE)
    assert rtc.next_event_ns() == 500 * MS
    rtc.advance_to(500 * MS - 1)
    assert line.level == 0
    rtc.advance_to(500 * MS)
    assert line.level == 1 and rd(rtc, R.REG_C) & R.C_PF
    assert rtc.next_event_ns() == S


def test_irqf_follows_flags_and_enables_both_ways(rtc, line):
    rtc.advance_to(S)                                       # UF set, UIE off
    wr(rtc, R.REG_B, R.B_24H | R.B_UIE)
    assert line.level == 1
    wr(rtc, R.REG_B, R.B_24H)                               # IRQF = UF.UIE + ...: drops with UIE
    assert line.level == 0 and rd(rtc, R.REG_C) & (R.C_IRQF | R.C_UF) == R.C_UF


def test_index_port_bit_7_masks_nmi_and_index_is_7_bits(rtc):
    rtc.io_write(0, 1, 0x80 | 0x40)
    assert rtc.nmi_disabled and rtc.index == 0x40
    rtc.io_write(0, 1, 0x0E)
    assert not rtc.nmi_disabled
    assert rtc.io_read(0, 1) == 0xFF                               # the index port is write-only


def test_cmos_ram_keeps_bytes_and_c_d_are_read_only(rtc):
    wr(rtc, 0x40, 0xA5)
    assert rd(rtc, 0x40) == 0xA5
    wr(rtc, R.REG_D, 0)
    assert rd(rtc, R.REG_D) == 0x80
    assert rd(rtc, R.BASE_MEMORY_LO) | rd(rtc, R.BASE_MEMORY_HI) << 8 == 640
    assert rd(rtc, R.EXT_MEMORY_LO) | rd(rtc, R.EXT_MEMORY_HI) << 8 == 63 * 1024
    assert rd(rtc, R.HIGH_MEMORY_LO) | rd(rtc, R.HIGH_MEMORY_HI) << 8 == (48 << 20) // 65536


def test_a_long_idle_skip_keeps_the_calendar_right(rtc):
    rtc.advance_to(S + 10 * 86400 * S)                      # ten days after 23:59:59
    assert clock(rtc) == [0x26, 0x12, 0x15, 3, 0x23, 0x59, 0x59]   # Tuesday 15th
    rtc.advance_to(S + 10 * 86400 * S + S)
    assert clock(rtc) == [0x26, 0x12, 0x16, 4, 0x00, 0x00, 0x00]


def test_impossible_time_written_by_the_guest_is_left_alone(rtc):
    wr(rtc, R.REG_B, R.B_SET | R.B_24H)
    wr(rtc, R.MONTH, 0x13)
    wr(rtc, R.REG_B, R.B_24H)
    rtc.advance_to(10 * S)
    assert rd(rtc, R.MONTH) == 0x13


def test_the_update_phase_does_not_depend_on_the_host_so_runs_repeat():
    a = R.CmosRtc(host_time_ns=T0)
    b = R.CmosRtc(host_time_ns=T0 + 700 * MS)
    for ns in range(0, 3 * S, 37 * MS):
        a.advance_to(ns)
        b.advance_to(ns)
        assert rd(a, R.REG_A) == rd(b, R.REG_A) and rd(a, R.REG_C) == rd(b, R.REG_C)
