"""The local APIC timer (Intel SDM vol. 3A 10.5.4) on virtual time.

The timer counts down at the APIC bus clock divided by the divide
configuration register. On the soft platform the bus clock is
`BUS_HZ` = 100 MHz, the CPU's own clock (one count per instruction at
divide-by-1), so a guest that calibrates the APIC timer against the PIT or
the ACPI PM timer finds 100 MHz.

Modes (LVT timer bits 18:17): one-shot (00) counts from the initial count
to zero once; periodic (01) reloads the initial count each time it reaches
zero; TSC-deadline (10) fires when the TSC reaches IA32_TSC_DEADLINE and
ignores the count registers. Like the PIT, the timer has no clock of its
own: `expiries(now_ns)` says how many times it fired up to `now_ns`, and
`next_due_ns` when it next will, so a halted CPU can skip to that instant.
"""
from __future__ import annotations

BUS_HZ = 100_000_000
NS_PER_BUS_CLOCK = 1_000_000_000 // BUS_HZ

ONE_SHOT, PERIODIC, TSC_DEADLINE = 0, 1, 2

# Divide configuration register bits 3 and 1:0 -> divisor (SDM Figure 10-10).
DIVISORS = {0b000: 2, 0b001: 4, 0b010: 8, 0b011: 16, 0b100: 32, 0b101: 64, 0b110: 128, 0b111: 1}
DIVIDE_MASK = 0b1011


def divisor(dcr: int) -> int:
    return DIVISORS[(dcr & 3) | (dcr >> 1) & 4]


class ApicTimer:
    def __init__(self, ns_per_tsc: int = NS_PER_BUS_CLOCK):
        self.ns_per_tsc = ns_per_tsc
        self.reset()

    def reset(self) -> None:
        self.mode = ONE_SHOT
        self.initial = 0
        self.dcr = 0
        self.anchor_ns = 0          # the count was `anchor_count` at anchor_ns
        self.anchor_count = 0
        self.next_due_ns: int | None = None
        self.deadline = 0           # IA32_TSC_DEADLINE (0 = disarmed)

    @property
    def ns_per_count(self) -> int:
        return divisor(self.dcr) * NS_PER_BUS_CLOCK

    # -- programming -------------------------------------------------------------
    def set_mode(self, mode: int, now: int) -> None:
        """A switch into or out of TSC-deadline mode disarms the timer
        (SDM 10.5.4.1). One-shot <-> periodic neither restarts nor resets
        the count: it goes on from its present value (a one-shot count that
        already reached 0 stays there), then follows the new mode."""
        if (mode == TSC_DEADLINE) != (self.mode == TSC_DEADLINE):
            self.initial = self.anchor_count = self.deadline = 0
            self.next_due_ns = None
        elif mode != self.mode and self.next_due_ns is not None:
            self.anchor_ns, self.anchor_count = now, self.current(now)
        self.mode = mode

    def load(self, initial: int, now: int) -> None:
        """A write of the initial-count register (re)starts the count; 0 stops it."""
        if self.mode == TSC_DEADLINE:
            return
        self.initial = initial & 0xFFFFFFFF
        self.anchor_ns, self.anchor_count = now, self.initial
        self.next_due_ns = now + self.initial * self.ns_per_count if self.initial else None

    def set_divide(self, dcr: int, now: int) -> None:
        """A new divisor applies from now on: the count keeps its value."""
        count = self.current(now)
        self.dcr = dcr & DIVIDE_MASK
        if self.mode != TSC_DEADLINE and self.next_due_ns is not None:
            self.anchor_ns, self.anchor_count = now, count
            self.next_due_ns = now + count * self.ns_per_count

    def arm_deadline(self, deadline: int, tsc_now: int, now: int) -> None:
        if self.mode != TSC_DEADLINE:
            return                              # writes outside the mode are ignored
        self.deadline = deadline & 0xFFFFFFFFFFFFFFFF
        if not self.deadline:
            self.next_due_ns = None
        else:
            self.next_due_ns = now + max(0, self.deadline - tsc_now) * self.ns_per_tsc

    # -- the count as a function of time -------------------------------------------
    def current(self, now: int) -> int:
        if self.mode == TSC_DEADLINE or self.next_due_ns is None:
            return 0                            # stopped, expired one-shot, or never started
        ticks = max(0, now - self.anchor_ns) // self.ns_per_count
        if ticks < self.anchor_count:
            return self.anchor_count - ticks
        if self.mode == ONE_SHOT:
            return 0
        return self.initial - (ticks - self.anchor_count) % self.initial

    def expiries(self, now: int) -> int:
        """Times the timer reached zero (or its deadline) in (last call, now]."""
        due = self.next_due_ns
        if due is None or now < due:
            return 0
        if self.mode == PERIODIC:
            period = self.initial * self.ns_per_count
            n = 1 + (now - due) // period
            self.next_due_ns = due + n * period
            return n
        self.next_due_ns = None
        if self.mode == TSC_DEADLINE:
            self.deadline = 0                   # the MSR reads 0 once it fired
        return 1
