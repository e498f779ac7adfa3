"""The I/O APIC (Intel 82093AA and the ICH's I/O APIC) at 0xFEC00000.

Two registers on the MMIO page: IOREGSEL (offset 0x00) selects an internal
register, IOWIN (0x10) reads or writes it; the ICH's EOI register (0x40)
ends a level-triggered interrupt by vector. Internal registers: 0x00 ID
(bits 27:24), 0x01 version (0x20, 24 pins: max redirection entry 23 in bits
23:16), 0x02 arbitration ID, 0x10 + 2n / 0x11 + 2n the low and high halves
of redirection entry n.

A redirection entry turns its pin into a message on the APIC bus
(devices/apic_bus.py): vector (7:0), delivery mode (10:8: fixed, lowest
priority, SMI, NMI, INIT, ExtINT), destination mode (11: physical/logical),
delivery status (12, RO), pin polarity (13), remote IRR (14, RO), trigger
mode (15: edge/level), mask (16), destination (63:56).

- Edge: each rising edge of an unmasked pin sends one message; edges on a
  masked pin are lost.
- Level: an asserted, unmasked pin sends a message and sets remote IRR;
  no further message until the local APIC's EOI for that vector (broadcast
  by the local APIC, or written to the EOI register) clears remote IRR; a
  pin still asserted then sends again. Unmasking an asserted level pin sends.
  Setting an entry to edge clears its remote IRR (as the ICH and QEMU do;
  old Linux relies on it to recover a stuck line).
- Device levels are logical (1 = asserted): the polarity bit is stored and
  read back but does not invert the line, as in QEMU.
Messages are delivered the instant they are sent: delivery status reads 0.
"""
from __future__ import annotations

import threading
from collections import Counter

from ringvisor.devices.apic_defs import Delivery
from ringvisor.devices.apic_lock import locked

DEFAULT_BASE = 0xFEC00000
PAGE = 0x1000
PINS = 24
VERSION = 0x20

IOREGSEL, IOWIN, IOEOI = 0x00, 0x10, 0x40
REG_ID, REG_VERSION, REG_ARBITRATION, REG_REDIRECTION = 0x00, 0x01, 0x02, 0x10

ENTRY_WRITABLE_LOW = 0x0001AFFF     # vector, mode, dest mode, polarity, trigger, mask
ENTRY_WRITABLE_HIGH = 0xFF000000
REMOTE_IRR = 1 << 14
LEVEL = 1 << 15
MASKED = 1 << 16
LOGICAL = 1 << 11


class IoApic:
    def __init__(self, apic_id: int = 0, bus=None):
        self.bus = bus                   # ApicBus (attach_ioapic sets it)
        self.lock = threading.RLock()    # replaced by the bus's lock on attach
        self.id = apic_id & 0xF
        self.select = 0
        self.entries = [MASKED] * PINS   # low halves of the redirection entries
        self.high = [0] * PINS           # high halves: the destination
        self.levels = [0] * PINS
        self.messages: Counter = Counter()   # messages sent, per pin

    # -- device side ---------------------------------------------------------------
    @locked
    def set_irq(self, pin: int, level: int) -> None:
        if not 0 <= pin < PINS:
            raise ValueError(f"I/O APIC pin {pin} is not 0..{PINS - 1}")
        rose = level and not self.levels[pin]
        self.levels[pin] = 1 if level else 0
        entry = self.entries[pin]
        if entry & LEVEL:
            self._service_level(pin)
        elif rose and not entry & MASKED:
            self._send(pin)

    def irq_line(self, pin: int):
        return lambda level: self.set_irq(pin, level)

    def _service_level(self, pin: int) -> None:
        entry = self.entries[pin]
        if self.levels[pin] and not entry & (MASKED | REMOTE_IRR):
            if (entry >> 8) & 7 in (Delivery.FIXED, Delivery.LOWEST):
                self.entries[pin] |= REMOTE_IRR
            self._send(pin)

    def _send(self, pin: int) -> None:
        entry = self.entries[pin]
        self.messages[pin] += 1
        if self.bus is not None:
            self.bus.deliver(dest=self.high[pin] >> 24, logical=bool(entry & LOGICAL),
                             mode=(entry >> 8) & 7, vector=entry & 0xFF,
                             level=bool(entry & LEVEL))

    @locked
    def eoi(self, vector: int) -> None:
        """A local APIC ended a level-triggered interrupt with this vector."""
        for pin, entry in enumerate(self.entries):
            if entry & REMOTE_IRR and entry & 0xFF == vector:
                self.entries[pin] &= ~REMOTE_IRR
                self._service_level(pin)

    # -- registers ---------------------------------------------------------------------
    def read_register(self, index: int) -> int:
        if index == REG_ID:
            return self.id << 24
        if index == REG_VERSION:
            return (PINS - 1) << 16 | VERSION
        if index == REG_ARBITRATION:
            return self.id << 24
        pin, high = divmod(index - REG_REDIRECTION, 2)
        if 0 <= pin < PINS:
            return self.high[pin] if high else self.entries[pin]
        return 0

    def write_register(self, index: int, value: int) -> None:
        if index == REG_ID:
            self.id = (value >> 24) & 0xF
            return
        pin, high = divmod(index - REG_REDIRECTION, 2)
        if not 0 <= pin < PINS:
            return                           # version, arbitration and the rest are read-only
        if high:
            self.high[pin] = value & ENTRY_WRITABLE_HIGH
            return
        entry = (value & ENTRY_WRITABLE_LOW) | (self.entries[pin] & REMOTE_IRR)
        if not entry & LEVEL:
            entry &= ~REMOTE_IRR
        self.entries[pin] = entry
        if entry & LEVEL:
            self._service_level(pin)

    @locked
    def io_read(self, offset: int, size: int) -> int:
        if offset == IOREGSEL:
            return self.select
        if IOWIN <= offset < IOWIN + 4:
            shift = (offset - IOWIN) * 8
            return (self.read_register(self.select) >> shift) & ((1 << (8 * size)) - 1)
        return 0

    @locked
    def io_write(self, offset: int, size: int, value: int) -> None:
        if offset == IOREGSEL:
            self.select = value & 0xFF
        elif offset == IOWIN and size == 4:
            self.write_register(self.select, value & 0xFFFFFFFF)
        elif offset == IOEOI:
            self.eoi(value & 0xFF)

    def register(self, mmio, base: int = DEFAULT_BASE) -> None:
        mmio.register(base, PAGE, self, "I/O APIC")
