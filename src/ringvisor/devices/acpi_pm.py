"""The ACPI fixed-hardware register block (ACPI spec 4.8): PM1a event and
control registers and the PM timer, at the ports the FADT announces
(boot/pc_description.py: 0x600 event, 0x604 control, 0x608 timer, as on
QEMU's PIIX4).

- PM timer (4.8.3.3): a 24-bit counter at 3.579545 MHz on virtual time,
  read-only; bits 31:24 read 0. Each time its bit 23 changes, TMR_STS is
  set; with TMR_EN that raises the SCI, and `next_event_ns()` says when, so
  a halted CPU can skip to it (like the PIT's next edge).
- PM1_STS (write 1 to clear) and PM1_EN: timer, global lock, power button,
  sleep button, RTC and wake status/enable bits. The SCI line (an injected
  irq(level), IRQ 9 level-triggered) is high while an enabled status bit is.
- PM1_CNT: SCI_EN reads 1 (no SMI command port: the machine is always in
  ACPI mode); writing SLP_EN with a SLP_TYP calls `on_sleep(slp_typ)`:
  SLP_TYP 0 is soft-off (the DSDT's \\_S5), so a guest's ACPI power-off can
  end the run. `press_power_button()` sets PWRBTN_STS, the OS's cue to shut
  down.
"""
from __future__ import annotations

from typing import Callable

from ringvisor.devices.byteio import read_bytes, write_bytes

PM_TIMER_HZ = 3_579_545
NS_PER_S = 1_000_000_000
TIMER_BITS = 24
TIMER_MSB_PERIOD = 1 << (TIMER_BITS - 1)   # ticks between changes of bit 23
PORTS = 12                                 # 0-3 event block, 4-5 control, 8-11 timer

TMR_STS, BM_STS, GBL_STS, PWRBTN_STS, SLPBTN_STS, RTC_STS, WAK_STS = (
    1 << 0, 1 << 4, 1 << 5, 1 << 8, 1 << 9, 1 << 10, 1 << 15)
STS_BITS = TMR_STS | BM_STS | GBL_STS | PWRBTN_STS | SLPBTN_STS | RTC_STS | WAK_STS
EN_BITS = TMR_STS | GBL_STS | PWRBTN_STS | SLPBTN_STS | RTC_STS   # the same positions
SCI_EN, BM_RLD, GBL_RLS, SLP_EN = 1 << 0, 1 << 1, 1 << 2, 1 << 13
SLP_TYP_SHIFT, SLP_TYP_MASK = 10, 7 << 10
CNT_STORED = BM_RLD | SLP_TYP_MASK


def ns_to_ticks(ns: int) -> int:
    return ns * PM_TIMER_HZ // NS_PER_S


def ticks_to_ns(ticks: int) -> int:
    """The first nanosecond at which `ticks` timer clocks have elapsed."""
    return -(-ticks * NS_PER_S // PM_TIMER_HZ)


class AcpiPm:
    def __init__(self, clock: Callable[[], int] = lambda: 0,
                 sci: Callable[[int], None] | None = None,
                 on_sleep: Callable[[int], None] | None = None):
        self.clock = clock
        self.sci = sci or (lambda level: None)
        self.on_sleep = on_sleep or (lambda slp_typ: None)
        self.status = 0
        self.enable = 0
        self.control = SCI_EN
        self.sci_level = 0
        self.now_tick = 0
        self.sleeps: list[int] = []

    # -- virtual time ----------------------------------------------------------------
    def timer(self, ns: int | None = None) -> int:
        return ns_to_ticks(self.clock() if ns is None else ns) & ((1 << TIMER_BITS) - 1)

    def advance_to(self, ns: int) -> None:
        tick = ns_to_ticks(ns)
        if tick // TIMER_MSB_PERIOD > self.now_tick // TIMER_MSB_PERIOD:
            self.status |= TMR_STS
        self.now_tick = max(self.now_tick, tick)
        self._update_sci()

    def next_event_ns(self) -> int | None:
        """When TMR_STS next sets, if that raises the SCI."""
        if not self.enable & TMR_STS or self.status & TMR_STS:
            return None
        return ticks_to_ns((self.now_tick // TIMER_MSB_PERIOD + 1) * TIMER_MSB_PERIOD)

    # -- events -------------------------------------------------------------------------
    def press_power_button(self) -> None:
        self.status |= PWRBTN_STS
        self._update_sci()

    def _update_sci(self) -> None:
        level = 1 if self.control & SCI_EN and self.status & self.enable & EN_BITS else 0
        if level != self.sci_level:
            self.sci_level = level
            self.sci(level)

    # -- registers (byte-wide, as the bus splits wider accesses) ----------------------------
    def _read_byte(self, reg: int) -> int:
        if reg < 2:
            return (self.status >> (8 * reg)) & 0xFF
        if reg < 4:
            return (self.enable >> (8 * (reg - 2))) & 0xFF
        if reg < 6:
            return (self.control >> (8 * (reg - 4))) & 0xFF
        if 8 <= reg < 12:
            return (self.timer() >> (8 * (reg - 8))) & 0xFF
        return 0xFF

    def _write_byte(self, reg: int, value: int) -> None:
        if reg < 2:
            self.status &= ~((value << (8 * reg)) & STS_BITS)      # write 1 to clear
        elif reg < 4:
            shift = 8 * (reg - 2)
            self.enable = (self.enable & ~(0xFF << shift)) | ((value << shift) & EN_BITS)
        elif reg < 6:
            shift = 8 * (reg - 4)
            written = value << shift
            self.control = SCI_EN | (self.control & ~(0xFF << shift) & CNT_STORED) | (written & CNT_STORED)
            if written & SLP_EN:
                slp_typ = (self.control & SLP_TYP_MASK) >> SLP_TYP_SHIFT
                self.sleeps.append(slp_typ)
                self.on_sleep(slp_typ)
        self._update_sci()

    def io_read(self, offset: int, size: int) -> int:
        self.advance_to(self.clock())
        return read_bytes(self._read_byte, offset, size, PORTS)

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.advance_to(self.clock())
        write_bytes(self._write_byte, offset, size, value, PORTS)

    def register(self, ports, base: int) -> None:
        ports.register(base, 6, self, "ACPI PM1a event/control")
        ports.register(base + 8, 4, _Offset(self, 8), "ACPI PM timer")


class _Offset:
    """The timer's ports are registered on their own (0x606-0x607 are not
    ours): a view of the block from `delta` bytes in."""

    def __init__(self, pm: AcpiPm, delta: int):
        self.pm, self.delta = pm, delta

    def io_read(self, offset: int, size: int) -> int:
        return self.pm.io_read(offset + self.delta, size)

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.pm.io_write(offset + self.delta, size, value)
