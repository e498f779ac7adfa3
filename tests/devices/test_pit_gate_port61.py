"""The 8254's GATE input (datasheet: "GATE pin operations summary" and the
mode descriptions) on channel 2, and port 0x61 that wires it on a PC:
bit 0 drives GATE2, bit 5 reads OUT2, bit 4 toggles with DRAM refresh."""
from __future__ import annotations

import pytest

from ringvisor.devices.pit8254 import Pit8254, ticks_to_ns
from ringvisor.devices.port61 import GATE2, OUT2, REFRESH, REFRESH_PERIOD_NS, SPEAKER, Port61


def program(pit, channel, mode, count):
    pit.io_write(3, 1, channel << 6 | 3 << 4 | mode << 1)
    pit.io_write(channel, 1, count & 0xFF)
    pit.io_write(channel, 1, count >> 8)


def latch_read(pit, channel):
    pit.io_write(3, 1, channel << 6)
    return pit.io_read(channel, 1) | pit.io_read(channel, 1) << 8


@pytest.fixture
def rig():
    pit = Pit8254()
    return pit, Port61(pit, lambda: pit.now_ns)


def at(pit, tick):
    pit.advance_to(ticks_to_ns(tick))


def test_linux_pit_calibration_sequence_sees_out2_rise_at_terminal_count(rig):
    # arch/x86/kernel/tsc.c pit_calibrate_tsc(): gate high, speaker off,
    # channel 2 mode 0 with a 10 ms count, then poll port 0x61 bit 5.
    pit, p61 = rig
    p61.io_write(0, 1, (p61.io_read(0, 1) & ~0x02) | 0x01)
    program(pit, 2, 0, 11932)
    at(pit, 11931)
    assert not p61.io_read(0, 1) & OUT2
    at(pit, 11932)
    assert p61.io_read(0, 1) & OUT2


def test_mode0_gate_low_suspends_counting_and_high_resumes(rig):
    pit, p61 = rig
    p61.io_write(0, 1, GATE2)
    program(pit, 2, 0, 1000)
    at(pit, 300)
    assert latch_read(pit, 2) == 700
    p61.io_write(0, 1, 0)                       # GATE2 low: the count holds
    at(pit, 5000)
    assert latch_read(pit, 2) == 700 and not p61.io_read(0, 1) & OUT2
    p61.io_write(0, 1, GATE2)                   # resumes: 700 more clocks to terminal count
    at(pit, 5699)
    assert not p61.io_read(0, 1) & OUT2
    at(pit, 5700)
    assert p61.io_read(0, 1) & OUT2


def test_count_written_with_gate_low_waits_for_gate(rig):
    pit, p61 = rig
    program(pit, 2, 0, 100)                     # port 0x61 starts with GATE2 low
    at(pit, 1000)
    assert latch_read(pit, 2) == 100 and not pit.out(2)
    p61.io_write(0, 1, GATE2)
    at(pit, 1100)
    assert pit.out(2)


def test_mode3_gate_low_forces_out_high_and_rising_edge_restarts_the_period(rig):
    pit, p61 = rig
    p61.io_write(0, 1, GATE2 | SPEAKER)         # the speaker beep: mode 3 square wave
    program(pit, 2, 3, 100)
    at(pit, 60)
    assert not pit.out(2)                       # second half of the period: OUT low
    p61.io_write(0, 1, SPEAKER)
    assert pit.out(2)                           # GATE low: OUT high at once
    at(pit, 500)
    assert pit.out(2)
    p61.io_write(0, 1, GATE2 | SPEAKER)         # rising edge: a new period from here
    at(pit, 549)
    assert pit.out(2)
    at(pit, 550)
    assert not pit.out(2)
    assert p61.io_read(0, 1) & (GATE2 | SPEAKER) == GATE2 | SPEAKER


def test_mode2_rising_edge_reloads(rig):
    pit, p61 = rig
    p61.io_write(0, 1, GATE2)
    program(pit, 2, 2, 50)
    at(pit, 30)
    assert latch_read(pit, 2) == 20
    p61.io_write(0, 1, 0)
    at(pit, 40)
    assert latch_read(pit, 2) == 20             # suspended
    p61.io_write(0, 1, GATE2)
    assert latch_read(pit, 2) == 50             # reloaded on the rising edge


def test_mode1_is_a_gate_triggered_one_shot_and_retriggerable(rig):
    pit, p61 = rig
    program(pit, 2, 1, 100)
    at(pit, 500)
    assert pit.out(2)                           # no trigger yet: OUT high
    p61.io_write(0, 1, GATE2)                   # trigger
    at(pit, 501)
    assert not pit.out(2)
    at(pit, 599)
    assert not pit.out(2) and latch_read(pit, 2) == 1
    at(pit, 600)
    assert pit.out(2)
    p61.io_write(0, 1, 0)
    p61.io_write(0, 1, GATE2)                   # retrigger
    at(pit, 650)
    assert not pit.out(2) and latch_read(pit, 2) == 50


def test_mode5_strobes_once_after_a_trigger(rig):
    pit, p61 = rig
    program(pit, 2, 5, 10)
    at(pit, 100)
    assert pit.out(2)
    p61.io_write(0, 1, GATE2)
    at(pit, 110)
    assert not pit.out(2)                       # the one-clock strobe at terminal count
    at(pit, 111)
    assert pit.out(2)


def test_mode1_without_a_count_ignores_triggers(rig):
    pit, p61 = rig
    pit.io_write(3, 1, 2 << 6 | 3 << 4 | 1 << 1)
    p61.io_write(0, 1, GATE2)
    at(pit, 10)
    assert pit.out(2) and pit.channels[2].start is None


def test_gate0_stays_high_and_channel0_interrupts_are_unchanged(rig):
    pit, p61 = rig
    p61.io_write(0, 1, 0)
    assert pit.channels[0].gate and pit.channels[1].gate
    rises = []
    pit.irq = rises.append
    program(pit, 0, 2, 100)
    at(pit, 1000)
    assert rises.count(1) == 1                  # one advance, one pulse (edges coalesce)


def test_port61_bits(rig):
    pit, p61 = rig
    p61.io_write(0, 1, 0xFF)                    # only bits 0-3 are writable
    assert p61.io_read(0, 1) & 0xCF == 0x0F
    pit.advance_to(0)
    first = p61.io_read(0, 1) & REFRESH
    pit.advance_to(REFRESH_PERIOD_NS)
    assert p61.io_read(0, 1) & REFRESH != first  # refresh toggles every 15.085 us
    assert p61.io_read(0, 1) & 0xC0 == 0         # no parity or IOCHK errors
    assert p61.io_read(0, 2) >> 8 == 0xFF        # nothing answers at 0x62
