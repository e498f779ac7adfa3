"""The High Precision Event Timer (IA-PC HPET specification 1.0a) on
virtual time, at 0xFED00000 (1 KiB of 64-bit registers).

A 64-bit main counter at 100 MHz (period 10,000,000 fs, the CPU's clock
here and QEMU's HPET rate) and three comparators. Registers: general
capabilities and ID (0x000: revision 1, 3 timers, 64-bit counter, legacy
replacement capable, vendor 0x8086), general configuration (0x010:
ENABLE_CNF, LEG_RT_CNF), general interrupt status (0x020, write 1 to
clear), the main counter (0x0F0, writable while halted), and per timer n
at 0x100 + 0x20 n its configuration and capabilities (level/edge, enable,
periodic, 32-bit mode, value-set, I/O APIC route) and its comparator.

- A comparator fires when the counter reaches it (in 32-bit mode, its low
  32 bits, each wrap); in periodic mode (timers 0 and 1) the comparator
  then advances by the period. As QEMU: a comparator write in periodic
  mode sets the period, and the comparator too when Tn_VAL_SET_CNF is set
  (which then clears itself).
- Interrupts go out only with ENABLE_CNF and Tn_INT_ENB_CNF: edge timers
  pulse their line, level timers set their status bit and hold the line
  until software clears the bit. With LEG_RT_CNF, timer 0 drives ISA IRQ 0
  and timer 1 IRQ 8 (the PIT and RTC are then disconnected: the machine is
  told through `on_legacy(enabled)`); otherwise timer n drives the I/O APIC
  pin in Tn_INT_ROUTE_CNF, one of the pins its capability allows (20-23).
  FSB (MSI) delivery is not offered.
- `advance_to(ns)` / `next_event_ns()` as for the PIT; `clock()` gives the
  present for counter reads.
"""
from __future__ import annotations

from typing import Callable

DEFAULT_BASE = 0xFED00000
LENGTH = 0x400
TIMERS = 3
NS_PER_TICK = 10
PERIOD_FS = NS_PER_TICK * 1_000_000
VENDOR = 0x8086
ROUTE_CAP = 0x00F00000            # I/O APIC pins 20-23
LEGACY_IRQS = (0, 8)              # timer 0 -> IRQ 0, timer 1 -> IRQ 8

CAPABILITIES = (PERIOD_FS << 32 | VENDOR << 16 | 1 << 15 | 1 << 13 | (TIMERS - 1) << 8 | 0x01)
ENABLE_CNF, LEG_RT_CNF = 1 << 0, 1 << 1

TN_LEVEL, TN_INT_ENB, TN_PERIODIC, TN_PER_CAP, TN_SIZE_CAP = 1 << 1, 1 << 2, 1 << 3, 1 << 4, 1 << 5
TN_VAL_SET, TN_32MODE = 1 << 6, 1 << 8
TN_ROUTE_SHIFT, TN_ROUTE_MASK = 9, 0x1F << 9
TN_WRITABLE = TN_LEVEL | TN_INT_ENB | TN_PERIODIC | TN_VAL_SET | TN_32MODE | TN_ROUTE_MASK

REG_CAPABILITIES, REG_CONFIG, REG_STATUS, REG_COUNTER = 0x000, 0x010, 0x020, 0x0F0
TIMER_BASE, TIMER_STRIDE = 0x100, 0x20
MASK64 = (1 << 64) - 1


class Comparator:
    def __init__(self, index: int):
        self.index = index
        self.periodic_capable = index < 2
        self.config = 0
        self.cmp = MASK64
        self.period = 0

    @property
    def capabilities(self) -> int:
        return ROUTE_CAP << 32 | TN_SIZE_CAP | (TN_PER_CAP if self.periodic_capable else 0)

    @property
    def modulus(self) -> int:
        return 1 << 32 if self.config & TN_32MODE else 1 << 64

    @property
    def periodic(self) -> bool:
        return bool(self.config & TN_PERIODIC)

    def first_fire(self, last: int) -> int | None:
        """The first counter value after `last` at which the comparator matches."""
        m = self.modulus
        start = last + 1
        first = start + ((self.cmp % m) - start) % m
        return first if first <= MASK64 else None

    def fires(self, last: int, now: int) -> int:
        """Matches in the counter values (last, now]; advances a periodic comparator."""
        first = self.first_fire(last)
        if first is None or first > now:
            return 0
        if self.periodic and self.period:
            n = 1 + (now - first) // self.period
            self.cmp = (first + n * self.period) % self.modulus
            return n
        return 1 + (now - first) // self.modulus


class Hpet:
    def __init__(self, clock: Callable[[], int] = lambda: 0,
                 ioapic_irq: Callable[[int, int], None] | None = None,
                 isa_irq: Callable[[int, int], None] | None = None,
                 on_legacy: Callable[[bool], None] | None = None):
        self.clock = clock
        self.ioapic_irq = ioapic_irq or (lambda pin, level: None)
        self.isa_irq = isa_irq or (lambda irq, level: None)
        self.on_legacy = on_legacy or (lambda enabled: None)
        self.config = 0
        self.status = 0
        self.counter_base = 0         # the counter at anchor_ns (or its value while halted)
        self.anchor_ns = 0
        self.last_tick = 0            # the counter value up to which comparators were checked
        self.timers = [Comparator(i) for i in range(TIMERS)]
        self.fired = [0] * TIMERS

    # -- the main counter ---------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return bool(self.config & ENABLE_CNF)

    def counter(self, ns: int) -> int:
        if not self.enabled:
            return self.counter_base
        return (self.counter_base + max(0, ns - self.anchor_ns) // NS_PER_TICK) & MASK64

    def advance_to(self, ns: int) -> None:
        if not self.enabled:
            return
        now = self.counter(ns)
        if now <= self.last_tick:
            return
        for timer in self.timers:
            n = timer.fires(self.last_tick, now)
            if n:
                self.fired[timer.index] += n
                self._interrupt(timer)
        self.last_tick = now

    def next_event_ns(self) -> int | None:
        if not self.enabled:
            return None
        ticks = [t.first_fire(self.last_tick) for t in self.timers if t.config & TN_INT_ENB]
        ticks = [t for t in ticks if t is not None]
        if not ticks:
            return None
        return self.anchor_ns + (min(ticks) - self.counter_base) * NS_PER_TICK

    # -- interrupts ------------------------------------------------------------------------
    def _line(self, timer: Comparator):
        if self.config & LEG_RT_CNF and timer.index < 2:
            irq = LEGACY_IRQS[timer.index]
            return lambda level: self.isa_irq(irq, level)
        pin = (timer.config & TN_ROUTE_MASK) >> TN_ROUTE_SHIFT
        if not ROUTE_CAP >> pin & 1:
            return None                   # a route the capability does not offer goes nowhere
        return lambda level: self.ioapic_irq(pin, level)

    def _interrupt(self, timer: Comparator) -> None:
        if not timer.config & TN_INT_ENB:
            return
        line = self._line(timer)
        if timer.config & TN_LEVEL:
            self.status |= 1 << timer.index
            if line:
                line(1)
        elif line:
            line(1)
            line(0)

    def _drop_level(self, timer: Comparator) -> None:
        line = self._line(timer)
        if line and timer.config & TN_LEVEL:
            line(0)

    # -- registers (64-bit, reachable as 32-bit halves) ------------------------------------------
    def read_register(self, reg: int) -> int:
        if reg == REG_CAPABILITIES:
            return CAPABILITIES
        if reg == REG_CONFIG:
            return self.config
        if reg == REG_STATUS:
            return self.status
        if reg == REG_COUNTER:
            return self.counter(self.clock())
        timer, field = self._timer_field(reg)
        if timer is None:
            return 0
        if field == 0:
            return timer.capabilities | timer.config
        if field == 8:
            return timer.cmp % timer.modulus
        return 0                          # FSB route: not offered

    def write_register(self, reg: int, value: int, mask: int) -> None:
        now = self.clock()
        self.advance_to(now)
        old = self.read_register(reg)
        value = (old & ~mask) | (value & mask)
        if reg == REG_CONFIG:
            self._write_config(value & (ENABLE_CNF | LEG_RT_CNF), now)
        elif reg == REG_STATUS:
            cleared = value & mask & self.status
            for timer in self.timers:
                if cleared >> timer.index & 1:
                    self.status &= ~(1 << timer.index)
                    self._drop_level(timer)
        elif reg == REG_COUNTER and not self.enabled:
            self.counter_base = self.last_tick = value & MASK64
        else:
            timer, field = self._timer_field(reg)
            if timer is not None:
                self._write_timer(timer, field, value, mask)

    def _write_config(self, value: int, now: int) -> None:
        was_enabled, was_legacy = self.enabled, bool(self.config & LEG_RT_CNF)
        if was_enabled and not value & ENABLE_CNF:
            self.counter_base = self.counter(now)       # the counter halts
        if not was_enabled and value & ENABLE_CNF:
            self.anchor_ns, self.last_tick = now, self.counter_base
        self.config = value
        if was_legacy != bool(value & LEG_RT_CNF):
            self.on_legacy(bool(value & LEG_RT_CNF))

    def _write_timer(self, timer: Comparator, field: int, value: int, mask: int) -> None:
        if field == 0:
            writable = TN_WRITABLE & ~(0 if timer.periodic_capable else TN_PERIODIC)
            new = value & writable
            still_on = new & TN_LEVEL and new & TN_INT_ENB
            if self.status >> timer.index & 1 and not still_on:
                self._drop_level(timer)          # no longer a level interrupt that is on
                self.status &= ~(1 << timer.index)
            timer.config = new
        elif field == 8:
            new = value & (0xFFFFFFFF if timer.config & TN_32MODE else MASK64)
            if not timer.periodic or timer.config & TN_VAL_SET:
                timer.cmp = new
            if timer.periodic:
                timer.period = new
            timer.config &= ~TN_VAL_SET

    def _timer_field(self, reg: int):
        if TIMER_BASE <= reg < TIMER_BASE + TIMERS * TIMER_STRIDE:
            index, field = divmod(reg - TIMER_BASE, TIMER_STRIDE)
            return self.timers[index], field
        return None, 0

    def io_read(self, offset: int, size: int) -> int:
        reg, shift = offset & ~7, (offset & 7) * 8
        value = self.read_register(reg) >> shift
        return value & ((1 << (8 * size)) - 1)

    def io_write(self, offset: int, size: int, value: int) -> None:
        if offset & 3 or size not in (4, 8):
            return                        # the HPET takes 32- and 64-bit accesses only
        reg, shift = offset & ~7, (offset & 7) * 8
        mask = ((1 << (8 * size)) - 1) << shift
        self.write_register(reg, value << shift, mask)

    def register(self, mmio, base: int = DEFAULT_BASE) -> None:
        mmio.register(base, LENGTH, self, "HPET")
