"""The guest's one-shot timer (HC_SET_TIMER) on the platform's hardware timer.

The monitor, not the guest, owns the 8259 pair and the 8254 here: it routes
IRQ 0 to a vector of its own IDT (PIC_VECTOR; every other line masked) and
runs PIT channel 0 in mode 0 (interrupt on terminal count), loaded for the
guest's next deadline. IRQ 0 then reaches the monitor through its IDT like
any trap; if the deadline has passed the monitor raises EVT_TIMER, otherwise
(a deadline beyond one PIT period of 55 ms, or rounding) it reloads the PIT
for the rest. Guest time is the platform's virtual clock since the guest
started, so runs repeat to the instruction. The guest's 100 Hz tick is
its own: ringos re-arms deadline + 10 ms from each EVT_TIMER.
"""
from __future__ import annotations

from ringvisor.devices.pit8254 import NS_PER_S, PIT_HZ
from ringvisor.machine.soft_platform import NS_PER_INSTRUCTION

PIC_VECTOR = 0xF0                 # IRQ 0..7 -> 0xF0..0xF7, IRQ 8..15 -> 0xF8..0xFF
PIC_PORTS = ((0x20, 0x21), (0xA0, 0xA1))
AUTO_EOI = 0x03                   # ICW4: 8086 mode, automatic end of interrupt
PIT_CONTROL, PIT_CHANNEL0 = 0x43, 0x40
PIT_MODE0 = 0x30                  # channel 0, LSB then MSB, mode 0, binary
MAX_COUNT = 0xFFFF


class PvTimer:
    def __init__(self, ports, platform):
        self.ports, self.platform = ports, platform
        self.start_ns = 0
        self.deadline = 0                      # guest system time in ns; 0 = not armed
        self.stats = {"armed": 0, "fired": 0, "irqs": 0, "reloads": 0}

    def start(self) -> None:
        """Program the PIC pair (IRQ 0 only) and note the guest's time zero."""
        out = self.ports.write
        for n, (cmd, data) in enumerate(PIC_PORTS):
            out(cmd, 1, 0x11)                  # ICW1: edge, cascade, ICW4 follows
            out(data, 1, PIC_VECTOR + 8 * n)   # ICW2: vector base
            out(data, 1, 0x04 if n == 0 else 0x02)   # ICW3: slave on IR2
            out(data, 1, AUTO_EOI)
        out(0x21, 1, 0xFE)
        out(0xA1, 1, 0xFF)
        self.start_ns = self.platform.now_ns()
        self._stop()

    def now(self) -> int:
        """Guest system time: ns since the guest started."""
        return self.platform.now_ns() - self.start_ns

    def tsc(self) -> int:
        """The TSC at this instant on the same clock (the platform's TSC
        counts one tick per NS_PER_INSTRUCTION): read from the clock, not
        with RDTSC, so `ringvisor compare`'s log of guest RDTSCs stays the guest's."""
        return self.platform.now_ns() // NS_PER_INSTRUCTION

    @property
    def tsc_khz(self) -> int:
        return 1_000_000 // NS_PER_INSTRUCTION

    def arm(self, deadline: int) -> bool:
        """HC_SET_TIMER; True if the deadline has already passed (fire now)."""
        self.stats["armed"] += 1
        self.deadline = deadline
        if deadline == 0:
            self._stop()
            return False
        return self._check()

    def on_irq(self) -> bool:
        """IRQ 0 arrived: True if the deadline has passed (EVT_TIMER)."""
        self.stats["irqs"] += 1
        return self.deadline != 0 and self._check()

    def _check(self) -> bool:
        left = self.deadline - self.now()
        if left <= 0:
            self.deadline = 0
            self.stats["fired"] += 1
            self._stop()
            return True
        # One tick more than the exact count: the PIT's tick grid starts
        # before now, and the edge must not come before the deadline.
        ticks = min(MAX_COUNT, -(-left * PIT_HZ // NS_PER_S) + 1)
        self.ports.write(PIT_CONTROL, 1, PIT_MODE0)
        self.ports.write(PIT_CHANNEL0, 1, ticks & 0xFF)
        self.ports.write(PIT_CHANNEL0, 1, ticks >> 8)
        self.stats["reloads"] += 1
        return False

    def _stop(self) -> None:
        self.ports.write(PIT_CONTROL, 1, PIT_MODE0)    # no count loaded: the channel waits

    @property
    def armed(self) -> bool:
        return self.deadline != 0
