"""Intel 8254 programmable interval timer (ports 0x40-0x43), on virtual time.

Three 16-bit down-counters clocked at 1.193182 MHz. The PIT has no clock of its
own: the machine moves virtual time forward with `advance_to(ns)`/`advance(ns)`
and the counters read and fire as if that much time had passed. Between two
advances time stands still, so a guest that polls a counter needs the machine
to advance time as the guest runs (the soft engine does, per instruction).
`next_event_ns()` says when channel 0 next raises IRQ 0, so a machine whose CPU
halted can skip the idle time.

Channel 0's OUT drives IRQ 0 through the injected `irq(level)`:
- modes 2 and 3 (the periodic OS tick): OUT rises at every period boundary;
  each advance that crosses one or more boundaries pulses irq(1), irq(0) once.
  An edge-triggered PIC latches a single request until the CPU takes it, so
  further edges in the same advance could not be seen; they are counted in
  `stats.coalesced` (lost ticks, as on real hardware with interrupts off).
- mode 0 (one-shot): OUT rises at terminal count and stays high: irq(1), and
  irq(0) when the guest reprograms the channel. Mode 4 pulses once.
The GATE inputs (8254 datasheet, "GATE pin operations summary"): channels 0
and 1 are tied high as on a PC; channel 2's gate is bit 0 of port 0x61
(devices/port61.py drives it with `set_gate`, and reads OUT2 with `out`):
- modes 0 and 4: GATE low suspends counting, high resumes it;
- modes 2 and 3: GATE low suspends counting and forces OUT high; a rising
  edge reloads the count and starts a new period;
- modes 1 and 5: a rising edge triggers the one-shot (loads the count);
  GATE low has no effect. A count written in these modes waits for a trigger.

Supported: access modes LSB, MSB, LSB-then-MSB; binary and BCD counts; the
counter latch command; the read-back command (count and status); a count
written in modes 2/3 while counting takes effect at the end of the current
period, in mode 0 it restarts the count at once.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from ringvisor.devices.byteio import read_bytes, write_bytes

BASE = 0x40
PORTS = 4
PIT_HZ = 1_193_182
NS_PER_S = 1_000_000_000

# Control word (port 0x43) fields.
SC_SHIFT, RW_SHIFT, MODE_SHIFT = 6, 4, 1
SC_READ_BACK = 3
RW_LATCH, RW_LSB, RW_MSB, RW_LSB_MSB = 0, 1, 2, 3
BCD = 0x01
# Read-back command bits (active low COUNT/STATUS, one bit per channel).
RB_NO_COUNT = 0x20
RB_NO_STATUS = 0x10
# Status byte bits.
STATUS_OUT = 0x80
STATUS_NULL_COUNT = 0x40


def ns_to_ticks(ns: int) -> int:
    return ns * PIT_HZ // NS_PER_S


def ticks_to_ns(ticks: int) -> int:
    """The first nanosecond at which `ticks` input clocks have elapsed."""
    return -(-ticks * NS_PER_S // PIT_HZ)


def _from_bcd(value: int) -> int:
    digits = [(value >> shift) & 0xF for shift in (12, 8, 4, 0)]
    return sum(min(d, 9) * 10 ** (3 - i) for i, d in enumerate(digits))


def _to_bcd(value: int) -> int:
    value %= 10000
    return sum((value // 10 ** i % 10) << (4 * i) for i in range(4))


class Channel:
    def __init__(self, index: int):
        self.index = index
        self.mode = 0
        self.access = RW_LSB_MSB
        self.bcd = False
        self.reload = 0x10000       # N, in input clocks (0 written means max)
        self.start: int | None = None  # tick the count was loaded; None = stopped
        self.pending_reload: int | None = None  # modes 2/3: next period's N
        self.switch_tick = 0
        self.gate = True
        self.paused_at: int | None = None      # GATE low in modes 0/2/3/4: counting suspended
        self.armed = False                     # modes 1/5: a count was written, a trigger starts it
        self.write_low: int | None = None       # LSB waiting for its MSB
        self.read_high_next = False
        self.latched_count: list[int] = []
        self.latched_status: int | None = None

    # -- programming ------------------------------------------------------------------
    def control(self, access: int, mode: int, bcd: bool) -> None:
        self.access, self.bcd = access, bcd
        self.mode = mode - 4 if mode in (6, 7) else mode  # 6, 7 alias 2, 3
        self.start = None
        self.pending_reload = None
        self.paused_at = None
        self.armed = False
        self.write_low = None
        self.read_high_next = False
        self.latched_count = []
        self.latched_status = None

    def load(self, raw: int, now: int) -> None:
        n = _from_bcd(raw) if self.bcd else raw
        n = n or (10000 if self.bcd else 0x10000)
        if self.mode in (1, 5):                   # waits for a GATE trigger
            self.pending_reload, self.armed = n, True
            if self.start is None:
                self.reload = n
            return
        if self.mode in (2, 3) and self.start is not None and self.paused_at is None:
            self._settle(now)
            self.pending_reload = n
            self.switch_tick = self.next_boundary(now)
        else:
            self.reload, self.start, self.pending_reload = n, now, None
            self.paused_at = None if self.gate else now

    def set_gate(self, level: bool, now: int) -> None:
        level = bool(level)
        if level == self.gate:
            return
        self._settle(now)
        self.gate = level
        if self.mode in (1, 5):
            if level and self.armed:              # trigger: load the count and start
                if self.pending_reload is not None:
                    self.reload, self.pending_reload = self.pending_reload, None
                self.start = now
            return
        if self.start is None:
            return
        if not level:
            self.paused_at = now
        elif self.mode in (2, 3):                 # rising edge: reload, new period
            self.start, self.paused_at = now, None
            if self.pending_reload is not None:
                self.reload, self.pending_reload = self.pending_reload, None
        else:                                     # modes 0/4: resume where it stopped
            self.start += now - self.paused_at
            self.paused_at = None

    def _effective(self, t: int) -> int:
        """Time as the counter sees it: it stands still while GATE holds it."""
        return t if self.paused_at is None else min(t, self.paused_at)

    def _settle(self, now: int) -> None:
        """Apply a pending reload whose period boundary has passed."""
        if self.pending_reload is not None and self.mode in (2, 3) and now >= self.switch_tick \
                and self.paused_at is None:
            self.start, self.reload = self.switch_tick, self.pending_reload
            self.pending_reload = None

    # -- the counter as a function of time ---------------------------------------------
    def next_boundary(self, t: int) -> int:
        """Modes 2/3: the first period boundary after tick t."""
        n = self.reload
        return self.start + ((t - self.start) // n + 1) * n

    def count(self, t: int) -> int:
        self._settle(t)
        n = self.reload
        if self.start is None:
            value = n
        else:
            e = self._effective(t) - self.start
            if self.mode == 2:
                value = n - e % n
            elif self.mode == 3:
                p, high = e % n, (n + 1) // 2
                value = n - 2 * (p if p < high else p - high)
            else:                                  # 0, 4 and the one-shots 1, 5
                value = n - e
        value &= 0xFFFF
        return _to_bcd(value) if self.bcd else value

    def out(self, t: int) -> int:
        self._settle(t)
        if self.start is None:
            return 0 if self.mode == 0 else 1
        if not self.gate and self.mode in (2, 3):
            return 1
        n, e = self.reload, self._effective(t) - self.start
        if self.mode == 0:
            return 1 if e >= n else 0
        if self.mode == 1:
            return 0 if e < n else 1
        if self.mode == 2:
            return 0 if e % n == n - 1 else 1
        if self.mode == 3:
            return 1 if e % n < (n + 1) // 2 else 0
        return 0 if e == n else 1                  # modes 4 and 5: a one-clock strobe

    def _one_shot_edge(self) -> int | None:
        if self.paused_at is not None:
            return None                           # suspended by GATE: no edge until it rises
        if self.mode in (0, 1):
            return self.start + self.reload
        return self.start + self.reload + 1       # 4, 5: OUT back high after the strobe

    def rising_edges(self, t0: int, t1: int) -> int:
        """Rising edges of OUT in the ticks (t0, t1]."""
        if self.start is None or t1 <= t0:
            return 0
        if self.paused_at is not None:
            return 0
        if self.mode in (2, 3):
            n = 0
            if self.pending_reload is not None and self.switch_tick <= t1:
                n += self._periodic_edges(t0, self.switch_tick)
                t0 = self.switch_tick
                self._settle(t1)
            return n + self._periodic_edges(t0, t1)
        edge = self._one_shot_edge()
        return 1 if edge is not None and t0 < edge <= t1 else 0

    def _periodic_edges(self, t0: int, t1: int) -> int:
        n = self.reload
        return max(0, (t1 - self.start) // n) - max(0, (t0 - self.start) // n)

    def next_edge(self, t: int) -> int | None:
        """Tick of the first rising edge of OUT after tick t, or None."""
        if self.start is None or self.paused_at is not None:
            return None
        self._settle(t)
        if self.mode in (2, 3):
            if self.pending_reload is not None:
                return self.switch_tick
            return self.next_boundary(t)
        edge = self._one_shot_edge()
        return edge if edge is not None and edge > t else None

    # -- reads ----------------------------------------------------------------------------
    def status(self, t: int) -> int:
        return (self.out(t) << 7 | (STATUS_NULL_COUNT if self.start is None else 0)
                | self.access << RW_SHIFT | self.mode << MODE_SHIFT | int(self.bcd))

    def _count_bytes(self, t: int) -> list[int]:
        value = self.count(t)
        lo, hi = value & 0xFF, value >> 8
        return {RW_LSB: [lo], RW_MSB: [hi], RW_LSB_MSB: [lo, hi]}[self.access]

    def latch_count(self, t: int) -> None:
        if not self.latched_count:            # a second latch before reading is ignored
            self.latched_count = self._count_bytes(t)

    def latch_status(self, t: int) -> None:
        if self.latched_status is None:
            self.latched_status = self.status(t)

    def read(self, t: int) -> int:
        if self.latched_status is not None:
            value, self.latched_status = self.latched_status, None
            return value
        if self.latched_count:
            return self.latched_count.pop(0)
        lo_hi = self._count_bytes(t)
        if len(lo_hi) == 1:
            return lo_hi[0]
        value = lo_hi[1] if self.read_high_next else lo_hi[0]
        self.read_high_next = not self.read_high_next
        return value

    def write(self, value: int, t: int) -> None:
        if self.access == RW_LSB:
            self.load(value, t)
        elif self.access == RW_MSB:
            self.load(value << 8, t)
        elif self.write_low is None:
            self.write_low = value
        else:
            low, self.write_low = self.write_low, None
            self.load(low | value << 8, t)


@dataclass
class PitStats:
    irq_pulses: int = 0     # edges delivered on IRQ 0
    coalesced: int = 0      # period boundaries folded into an earlier edge


class Pit8254:
    def __init__(self, irq: Callable[[int], None] | None = None):
        self.irq = irq or (lambda level: None)
        self.channels = tuple(Channel(i) for i in range(3))
        self.now_ns = 0
        self.now_tick = 0
        self.irq_level = 0
        self.stats = PitStats()
        self._lock = threading.Lock()   # the machine may advance time from its own thread

    def register(self, bus) -> None:
        bus.register(BASE, PORTS, self, "8254 PIT")

    # -- virtual time ------------------------------------------------------------------
    def advance_to(self, ns: int) -> None:
        with self._lock:
            self._advance_to(ns)

    def _advance_to(self, ns: int) -> None:
        if ns <= self.now_ns:
            return                             # time never runs backwards
        tick = ns_to_ticks(ns)
        ch0 = self.channels[0]
        edges = ch0.rising_edges(self.now_tick, tick)
        self.now_ns, self.now_tick = ns, tick
        for ch in self.channels[1:]:
            ch._settle(tick)
        if edges:
            self._fire(ch0, edges)

    def advance(self, ns: int) -> None:
        self.advance_to(self.now_ns + ns)

    def next_event_ns(self) -> int | None:
        """When IRQ 0 next fires (absolute virtual ns), None if it never will."""
        with self._lock:
            tick = self.channels[0].next_edge(self.now_tick)
        return None if tick is None else max(ticks_to_ns(tick), self.now_ns + 1)

    def _fire(self, ch0: Channel, edges: int) -> None:
        self.stats.irq_pulses += 1
        self.stats.coalesced += edges - 1
        if ch0.mode == 0:
            self._set_irq(1)                   # stays high until reprogrammed
        else:
            self._set_irq(1)
            self._set_irq(0)

    def _set_irq(self, level: int) -> None:
        if level != self.irq_level:
            self.irq_level = level
            self.irq(level)

    # -- channel 2's GATE and OUT, wired to port 0x61 on a PC -----------------------------------
    def set_gate(self, channel: int, level: bool) -> None:
        with self._lock:
            self.channels[channel].set_gate(level, self.now_tick)

    def out(self, channel: int) -> int:
        with self._lock:
            return self.channels[channel].out(self.now_tick)

    # -- registers ----------------------------------------------------------------------
    def _read(self, reg: int) -> int:
        if reg == 3:
            return 0xFF                        # the control register is write-only
        return self.channels[reg].read(self.now_tick)

    def _write(self, reg: int, value: int) -> None:
        t = self.now_tick
        if reg < 3:
            self.channels[reg].write(value, t)
            if reg == 0:
                self._set_irq(self.channels[0].out(t) if self.channels[0].mode == 0 else 0)
            return
        sc = value >> SC_SHIFT
        if sc == SC_READ_BACK:
            for ch in self.channels:
                if value & (2 << ch.index):
                    if not value & RB_NO_STATUS:
                        ch.latch_status(t)
                    if not value & RB_NO_COUNT:
                        ch.latch_count(t)
            return
        ch = self.channels[sc]
        access = (value >> RW_SHIFT) & 3
        if access == RW_LATCH:
            ch.latch_count(t)
            return
        ch.control(access, (value >> MODE_SHIFT) & 7, bool(value & BCD))
        if sc == 0:
            self._set_irq(0)                   # programming drops OUT (or pulses end)

    def io_read(self, offset: int, size: int) -> int:
        with self._lock:
            return read_bytes(self._read, offset, size, PORTS)

    def io_write(self, offset: int, size: int, value: int) -> None:
        with self._lock:
            write_bytes(self._write, offset, size, value, PORTS)
