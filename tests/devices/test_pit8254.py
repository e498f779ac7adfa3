import pytest

from ringvisor.devices.pic8259 import PicPair
from ringvisor.devices.pit8254 import PIT_HZ, Pit8254, ns_to_ticks, ticks_to_ns
from ringvisor.machine.bus import PortBus

MS = 1_000_000
LATCH_100HZ = (PIT_HZ + 50) // 100        # Linux's LATCH for HZ=100: 11932


class Line:
    def __init__(self):
        self.level = 0
        self.rises = 0

    def __call__(self, level):
        if level and not self.level:
            self.rises += 1
        self.level = level


@pytest.fixture
def line():
    return Line()


@pytest.fixture
def pit(line):
    return Pit8254(irq=line)


def program(pit, channel, mode, count, access=3):
    pit.io_write(3, 1, channel << 6 | access << 4 | mode << 1)
    if access in (1, 3):
        pit.io_write(channel, 1, count & 0xFF)
    if access in (2, 3):
        pit.io_write(channel, 1, (count >> 8) & 0xFF)


def latch_read(pit, channel):
    pit.io_write(3, 1, channel << 6)          # counter latch command
    lo = pit.io_read(channel, 1)
    hi = pit.io_read(channel, 1)
    return lo | hi << 8


def test_tick_conversions_round_trip():
    for t in (0, 1, 2, 11932, 10**9):
        assert ns_to_ticks(ticks_to_ns(t)) == t
        assert ns_to_ticks(ticks_to_ns(t) - 1) == t - 1 or t == 0


def test_linux_periodic_timer_mode2(pit, line):
    program(pit, 0, 2, LATCH_100HZ)            # outb(0x34, 0x43); lo; hi
    period_ns = ticks_to_ns(LATCH_100HZ)
    assert abs(period_ns - 10 * MS) < 1000
    assert pit.next_event_ns() == period_ns
    pit.advance_to(period_ns - 1)
    assert line.rises == 0
    pit.advance_to(period_ns)
    assert line.rises == 1 and line.level == 0   # a pulse
    for i in range(2, 12):
        pit.advance_to(pit.next_event_ns())
        assert line.rises == i
    assert abs(pit.now_ns - 110 * MS) < 20_000


def test_hobby_kernel_square_wave_mode3(pit, line):
    divisor = PIT_HZ // 1000                   # 1 kHz
    program(pit, 0, 3, divisor)                # outb(0x36, 0x43)
    pit.advance(1000 * MS)
    assert pit.stats.irq_pulses == 1
    assert pit.stats.coalesced == 1000 - 1 or pit.stats.coalesced == 1000
    line.rises = 0
    for _ in range(1000):
        pit.advance(MS)
    assert 999 <= line.rises <= 1001


def test_counter_reads_decrease_in_mode2(pit):
    program(pit, 0, 2, 1000)
    assert latch_read(pit, 0) == 1000
    pit.advance_to(ticks_to_ns(300))
    assert latch_read(pit, 0) == 700
    pit.advance_to(ticks_to_ns(1250))
    assert latch_read(pit, 0) == 750           # reloaded at 1000


def test_counter_reads_mode3_count_by_two(pit):
    program(pit, 0, 3, 1000)
    pit.advance_to(ticks_to_ns(100))
    assert latch_read(pit, 0) == 800
    pit.advance_to(ticks_to_ns(600))           # second half: reloaded, by two again
    assert latch_read(pit, 0) == 800


def test_latch_freezes_value_until_read(pit):
    program(pit, 0, 2, 5000)
    pit.io_write(3, 1, 0x00)
    pit.advance_to(ticks_to_ns(1000))
    pit.io_write(3, 1, 0x00)                   # a second latch is ignored
    assert pit.io_read(0, 1) | pit.io_read(0, 1) << 8 == 5000
    assert latch_read(pit, 0) == 4000


def test_unlatched_lohi_reads(pit):
    program(pit, 2, 0, 0x1234)
    assert pit.io_read(2, 1) == 0x34
    assert pit.io_read(2, 1) == 0x12


def test_lsb_only_and_msb_only_access(pit):
    program(pit, 1, 2, 0x56, access=1)
    assert pit.channels[1].reload == 0x56
    assert pit.io_read(1, 1) == 0x56
    program(pit, 1, 2, 0x7800, access=2)
    assert pit.channels[1].reload == 0x7800
    assert pit.io_read(1, 1) == 0x78


def test_zero_count_means_65536(pit, line):
    program(pit, 0, 2, 0)
    assert pit.channels[0].reload == 0x10000
    pit.advance_to(ticks_to_ns(0x10000))
    assert line.rises == 1


def test_mode0_one_shot(pit, line):
    program(pit, 0, 0, 500)                    # outb(0x30, 0x43)
    assert pit.next_event_ns() == ticks_to_ns(500)
    pit.advance_to(ticks_to_ns(499))
    assert line.level == 0
    pit.advance_to(ticks_to_ns(500))
    assert line.level == 1                     # OUT high at terminal count, stays
    assert pit.next_event_ns() is None
    pit.advance_to(ticks_to_ns(100_000))
    assert line.rises == 1
    assert latch_read(pit, 0) == (500 - 100_000) & 0xFFFF  # keeps counting, wraps
    program(pit, 0, 0, 200)                    # rearm: OUT low again
    assert line.level == 0
    pit.advance(ticks_to_ns(201))
    assert line.rises == 2


def test_mode0_new_count_restarts(pit, line):
    program(pit, 0, 0, 1000)
    pit.advance_to(ticks_to_ns(900))
    pit.io_write(0, 1, 0xE8)
    pit.io_write(0, 1, 0x03)                   # 1000 again, from now
    pit.advance_to(ticks_to_ns(1100))
    assert line.rises == 0
    pit.advance_to(ticks_to_ns(1900))
    assert line.rises == 1


def test_mode2_new_count_waits_for_period_end(pit, line):
    program(pit, 0, 2, 1000)
    pit.advance_to(ticks_to_ns(200))
    pit.io_write(0, 1, 100)
    pit.io_write(0, 1, 0)
    assert latch_read(pit, 0) == 800           # current period unaffected
    assert pit.next_event_ns() == ticks_to_ns(1000)
    pit.advance_to(ticks_to_ns(1000))
    assert line.rises == 1
    assert pit.next_event_ns() == ticks_to_ns(1100)
    pit.advance_to(ticks_to_ns(1500))
    assert pit.stats.irq_pulses == 2 and pit.stats.coalesced == 5 - 1  # 1100..1500


def test_reload_crossed_inside_one_advance(pit):
    program(pit, 0, 2, 1000)
    pit.advance_to(ticks_to_ns(10))
    program_count = 100
    pit.io_write(0, 1, program_count)
    pit.io_write(0, 1, 0)
    pit.advance_to(ticks_to_ns(1550))          # boundary at 1000, then 1100..1500
    assert pit.stats.coalesced + pit.stats.irq_pulses == 6


def test_mode4_strobe(pit, line):
    program(pit, 0, 4, 50)
    pit.advance_to(ticks_to_ns(50))
    assert line.rises == 0                     # OUT low for one clock at 0
    pit.advance_to(ticks_to_ns(51))
    assert line.rises == 1 and line.level == 0
    assert pit.next_event_ns() is None


def test_modes_6_and_7_alias_2_and_3(pit):
    pit.io_write(3, 1, 0x3C)                   # ch0, lohi, mode 6
    assert pit.channels[0].mode == 2
    pit.io_write(3, 1, 0x3E)
    assert pit.channels[0].mode == 3


def test_bcd_counting(pit):
    pit.io_write(3, 1, 0x35)                   # ch0, lohi, mode 2, BCD
    pit.io_write(0, 1, 0x00)
    pit.io_write(0, 1, 0x10)                   # 1000 decimal
    assert pit.channels[0].reload == 1000
    pit.advance_to(ticks_to_ns(1))
    assert latch_read(pit, 0) == 0x0999


def test_read_back_status_and_count(pit):
    program(pit, 2, 3, 0x1000)
    pit.io_write(3, 1, 0xC0 | 0x08)            # latch count and status of ch2
    status = pit.io_read(2, 1)
    assert status == 0x80 | 3 << 4 | 3 << 1    # OUT high, lohi, mode 3, not null
    assert pit.io_read(2, 1) | pit.io_read(2, 1) << 8 == 0x1000
    pit.io_write(3, 1, 0xB0)                   # control word: null count, OUT low (mode 0)
    pit.io_write(3, 1, 0xE0 | 0x08)            # status only
    assert pit.io_read(2, 1) == 0x40 | 3 << 4 | 0


def test_programming_other_channels_does_not_fire_irq0(pit, line):
    program(pit, 2, 2, 10)
    program(pit, 1, 2, 18)
    pit.advance(MS)
    assert line.rises == 0
    assert pit.next_event_ns() is None


def test_unprogrammed_pit_is_quiet(pit, line):
    assert pit.next_event_ns() is None
    pit.advance(10**9)
    assert line.rises == 0


def test_time_does_not_run_backwards(pit, line):
    program(pit, 0, 2, 100)
    pit.advance_to(ticks_to_ns(150))
    pit.advance_to(0)
    assert pit.now_tick == 150


def test_bad_inputs_are_defined(pit):
    assert pit.io_read(3, 1) == 0xFF           # control word register is write-only
    pit.io_write(0, 4, 0x34_00_00_00)          # bytes to 0x40, 0x41, 0x42, 0x43
    assert pit.channels[0].mode == 2
    assert pit.io_read(2, 4) >> 8 == 0xFFFF00 | 0xFF  # 0x42, 0x43 (0xFF), past end
    pit.io_read(1, 3)                           # unusual size: one byte


def test_pit_drives_pic_irq0():
    pic = PicPair()
    bus = PortBus()
    pic.register(bus)
    pit = Pit8254(irq=pic.irq_line(0))
    pit.register(bus)
    for port, v in ((0x20, 0x11), (0x21, 0x20), (0x21, 4), (0x21, 1), (0x21, 0xFE)):
        bus.write(port, 1, v)
    bus.write(0x43, 1, 0x34)
    bus.write(0x40, 1, LATCH_100HZ & 0xFF)
    bus.write(0x40, 1, LATCH_100HZ >> 8)
    for _ in range(3):
        assert not pic.pending()
        pit.advance_to(pit.next_event_ns())
        assert pic.pending()
        assert pic.acknowledge() == 0x20
        bus.write(0x20, 1, 0x20)
    assert pic.delivered[0] == 3
