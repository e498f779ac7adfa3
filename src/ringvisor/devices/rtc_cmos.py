"""The PC's CMOS real-time clock, a Motorola MC146818A behind ports 0x70
(index; bit 7 masks NMI) and 0x71 (data), on virtual time.

The clock starts at the host's UTC time (whole seconds) and then runs on the
soft platform's virtual clock, so a run repeats and a halted guest's skipped
time passes for the RTC too. Per the datasheet:
- registers 0-9 hold seconds, alarm seconds, minutes, alarm minutes, hours,
  alarm hours, day of week (1 = Sunday), date, month and year, in BCD or
  binary (register B DM) and 12- or 24-hour form (B 24/12; bit 7 of the
  hours = PM in 12-hour form). The update logic works on the stored bytes in
  the current format: changing DM or 24/12 does not convert them.
- an update cycle per second: UIP (register A bit 7) is high from 244 us
  before the update until the update's end 1984 us later, when the time
  registers change and UF is set. Alarm registers with bits 7-6 = 11 match
  any value. SET (B bit 7) stops updates (and clears UIE); clearing it starts
  the next second one second later. The divider (A bits 6-4) runs only at
  010 (the 32.768 kHz time base a PC has).
- periodic interrupts at the rate A's RS3-0 select; flags PF, AF, UF and
  IRQF in register C, which a read clears; IRQ 8 follows IRQF.
- register D reads 0x80 (VRT: the battery is good); 114 bytes of CMOS RAM
  (0x0E-0x7F) keep what the guest writes. The BIOS's memory-size bytes are
  filled in as a PC BIOS leaves them.
"""
from __future__ import annotations

import calendar
import datetime
import threading
import time
from typing import Callable

from ringvisor.devices.byteio import read_bytes, write_bytes

BASE = 0x70
PORTS = 2
NMI_DISABLE = 0x80
SIZE = 128

SECONDS, SECONDS_ALARM, MINUTES, MINUTES_ALARM, HOURS, HOURS_ALARM = 0, 1, 2, 3, 4, 5
DAY_OF_WEEK, DATE, MONTH, YEAR = 6, 7, 8, 9
REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D
CENTURY = 0x32                     # the PC/AT BIOS's century byte (BCD)

A_UIP, A_DV_MASK, A_DV_SHIFT, A_RS_MASK = 0x80, 0x70, 4, 0x0F
DV_32KHZ = 0b010
B_SET, B_PIE, B_AIE, B_UIE, B_SQWE, B_DM_BINARY, B_24H, B_DSE = 0x80, 0x40, 0x20, 0x10, 0x08, 0x04, 0x02, 0x01
C_IRQF, C_PF, C_AF, C_UF = 0x80, 0x40, 0x20, 0x10
D_VRT = 0x80
ALARM_DONT_CARE = 0xC0

NS = 1_000_000_000
UIP_LEAD_NS = 244_000              # UIP rises this long before an update begins
UPDATE_NS = 1_984_000              # an update cycle (32.768 kHz time base)
CRYSTAL_HZ = 32_768

# PC/AT BIOS data area of CMOS RAM: base memory (KiB) and extended memory (KiB above 1 MiB).
BASE_MEMORY_LO, BASE_MEMORY_HI = 0x15, 0x16
EXT_MEMORY_LO, EXT_MEMORY_HI = 0x17, 0x18
EXT_MEMORY2_LO, EXT_MEMORY2_HI = 0x30, 0x31
HIGH_MEMORY_LO, HIGH_MEMORY_HI = 0x34, 0x35   # RAM above 16 MiB, 64 KiB blocks


def periodic_ns(rs: int) -> int | None:
    """The periodic interrupt period for rate select RS3-0 (datasheet table,
    32.768 kHz time base): none for 0, 3.90625 ms and 7.8125 ms for 1 and 2,
    then 122.070 us doubling up to 500 ms for 15."""
    if rs == 0:
        return None
    clocks = 1 << (rs + 6) if rs < 3 else 1 << (rs - 1)
    return clocks * NS // CRYSTAL_HZ


def to_bcd(v: int) -> int:
    return (v // 10) << 4 | v % 10


def from_bcd(v: int) -> int:
    return (v >> 4) * 10 + (v & 0xF)


class CmosRtc:
    def __init__(self, irq: Callable[[int], None] | None = None, ram_size: int = 0,
                 host_time_ns: int | None = None):
        self.irq = irq or (lambda level: None)
        self.ram = bytearray(SIZE)
        self.index = 0
        self.nmi_disabled = False
        self.now = 0                                   # virtual ns the clock has reached
        self.irq_level = 0
        self._lock = threading.Lock()
        host = time.time_ns() if host_time_ns is None else host_time_ns
        self.ram[REG_A] = DV_32KHZ << A_DV_SHIFT | 0x6  # 1024 Hz periodic rate, as a BIOS leaves it
        self.ram[REG_B] = B_24H
        self.ram[REG_D] = D_VRT
        self._set_time(host // NS)
        # The first update comes one virtual second after power-on whatever
        # the host's phase, so a run repeats to the instruction (a guest's
        # wait for UIP does not depend on when it was started).
        self.next_update = NS
        self.next_periodic: int | None = None
        self._restart_periodic()
        self._memory_bytes(ram_size)

    # -- time as register bytes --------------------------------------------------------------
    def _enc(self, v: int) -> int:
        return v if self.ram[REG_B] & B_DM_BINARY else to_bcd(v)

    def _dec(self, v: int) -> int:
        return v if self.ram[REG_B] & B_DM_BINARY else from_bcd(v)

    def _enc_hours(self, h: int) -> int:
        if self.ram[REG_B] & B_24H:
            return self._enc(h)
        return self._enc(h % 12 or 12) | (0x80 if h >= 12 else 0)

    def _dec_hours(self, v: int) -> int:
        if self.ram[REG_B] & B_24H:
            return self._dec(v)
        return self._dec(v & 0x7F) % 12 + (12 if v & 0x80 else 0)

    def _set_time(self, unix_seconds: int) -> None:
        t = time.gmtime(unix_seconds)
        self.ram[CENTURY] = to_bcd(t.tm_year // 100)
        self._store(datetime.datetime(t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec),
                    (t.tm_wday + 1) % 7 + 1)

    def _store(self, when: datetime.datetime, day_of_week: int) -> None:
        r = self.ram
        r[SECONDS], r[MINUTES], r[HOURS] = self._enc(when.second), self._enc(when.minute), self._enc_hours(when.hour)
        r[DATE], r[MONTH], r[YEAR] = self._enc(when.day), self._enc(when.month), self._enc(when.year % 100)
        r[DAY_OF_WEEK] = self._enc(day_of_week)

    def _load(self) -> datetime.datetime | None:
        r = self.ram
        try:
            year = from_bcd(r[CENTURY]) * 100 + self._dec(r[YEAR])
            return datetime.datetime(year, self._dec(r[MONTH]), self._dec(r[DATE]), self._dec_hours(r[HOURS]),
                                     self._dec(r[MINUTES]), self._dec(r[SECONDS]))
        except ValueError:
            return None                                 # the guest stored an impossible time

    def _memory_bytes(self, ram_size: int) -> None:
        kib = ram_size // 1024
        ext = max(0, min(kib - 1024, 0xFFFF))
        high = max(0, min((ram_size - (16 << 20)) // 65536, 0xFFFF))
        for lo, value in ((BASE_MEMORY_LO, 640 if ram_size else 0), (EXT_MEMORY_LO, ext),
                          (EXT_MEMORY2_LO, ext), (HIGH_MEMORY_LO, high)):
            self.ram[lo], self.ram[lo + 1] = value & 0xFF, value >> 8

    # -- the clock -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return (self.ram[REG_A] & A_DV_MASK) >> A_DV_SHIFT == DV_32KHZ and not self.ram[REG_B] & B_SET

    def _restart_periodic(self) -> None:
        period = periodic_ns(self.ram[REG_A] & A_RS_MASK)
        running = (self.ram[REG_A] & A_DV_MASK) >> A_DV_SHIFT == DV_32KHZ
        self.next_periodic = self.now + period if period and running else None

    def _update(self) -> None:
        """One update cycle: the time advances one second; alarm check."""
        when = self._load()
        if when is not None:
            later = when + datetime.timedelta(seconds=1)
            dow = self._dec(self.ram[DAY_OF_WEEK])
            if later.day != when.day:
                dow = dow % 7 + 1
            if later.year // 100 != when.year // 100:
                self.ram[CENTURY] = to_bcd(later.year // 100 % 100)
            self._store(later, dow)
        flags = C_UF
        if all(self.ram[alarm] & ALARM_DONT_CARE == ALARM_DONT_CARE or self.ram[alarm] == self.ram[reg]
               for reg, alarm in ((SECONDS, SECONDS_ALARM), (MINUTES, MINUTES_ALARM), (HOURS, HOURS_ALARM))):
            flags |= C_AF
        self._flag(flags)

    def _flag(self, flags: int) -> None:
        """Set flags in register C; IRQF = PF.PIE + AF.AIE + UF.UIE (datasheet)."""
        c = (self.ram[REG_C] | flags) & ~C_IRQF
        b = self.ram[REG_B]
        if c & ((C_PF if b & B_PIE else 0) | (C_AF if b & B_AIE else 0) | (C_UF if b & B_UIE else 0)):
            c |= C_IRQF
        self.ram[REG_C] = c
        self._set_irq(1 if c & C_IRQF else 0)

    def _set_irq(self, level: int) -> None:
        if level != self.irq_level:
            self.irq_level = level
            self.irq(level)

    def advance_to(self, ns: int) -> None:
        with self._lock:
            self._advance_to(ns)

    def _advance_to(self, ns: int) -> None:
        if ns <= self.now:
            return
        if self.running:
            # Long skips (a halted guest): jump whole days at once, then step.
            behind = (ns - self.next_update) // NS
            if behind > 2 * 86400:
                when = self._load()
                if when is not None:
                    jump = behind - 86400
                    self._set_time(calendar.timegm(when.timetuple()) + jump)
                    self.next_update += jump * NS
            while self.next_update <= ns:
                self._update()
                self.next_update += NS
        else:
            self.next_update = max(self.next_update, ns)
        if self.next_periodic is not None and self.next_periodic <= ns:
            period = periodic_ns(self.ram[REG_A] & A_RS_MASK)
            self.next_periodic += ((ns - self.next_periodic) // period + 1) * period
            self._flag(C_PF)
        self.now = ns

    def next_event_ns(self) -> int | None:
        """When the RTC next raises IRQ 8, None if no enabled source will."""
        with self._lock:
            b, candidates = self.ram[REG_B], []
            if b & B_PIE and self.next_periodic is not None:
                candidates.append(self.next_periodic)
            if b & (B_UIE | B_AIE) and self.running:
                candidates.append(self.next_update)
            return min(candidates) if candidates else None

    # -- registers ---------------------------------------------------------------------------
    def _read(self, reg: int) -> int:
        if reg == 0:
            return 0xFF                                  # the index port is write-only
        i = self.index
        if i == REG_A:
            uip = A_UIP if self.running and self.next_update - self.now <= UIP_LEAD_NS + UPDATE_NS else 0
            return self.ram[REG_A] & ~A_UIP | uip
        if i == REG_C:
            value = self.ram[REG_C]
            self.ram[REG_C] = 0
            self._set_irq(0)
            return value
        return self.ram[i]

    def _write(self, reg: int, value: int) -> None:
        if reg == 0:
            self.index = value & 0x7F
            self.nmi_disabled = bool(value & NMI_DISABLE)
            return
        i = self.index
        if i in (REG_C, REG_D):
            return                                       # read-only
        if i == REG_A:
            was_running = self.running
            self.ram[REG_A] = value & ~A_UIP
            if not was_running and self.running:
                self.next_update = self.now + NS // 2    # leaving divider reset: first update in 500 ms
            self._restart_periodic()
            return
        if i == REG_B:
            old = self.ram[REG_B]
            if value & B_SET:
                value &= ~B_UIE                          # SET clears UIE (datasheet)
            self.ram[REG_B] = value
            if old & B_SET and not value & B_SET:
                self.next_update = self.now + NS         # the clock resumes from the written time
            self._flag(0)                                # IRQF follows the new enables
            return
        self.ram[i] = value

    def io_read(self, offset: int, size: int) -> int:
        with self._lock:
            return read_bytes(self._read, offset, size, PORTS)

    def io_write(self, offset: int, size: int, value: int) -> None:
        with self._lock:
            write_bytes(self._write, offset, size, value, PORTS)
