"""The bus that joins every CPU's local APIC and the I/O APICs.

On a Pentium 4 class machine the "APIC bus" is the system bus: an IPI from
one local APIC's ICR or an interrupt message from an I/O APIC reaches the
local APICs whose ID (physical mode) or logical ID (logical mode, flat or
cluster model) the destination selects (SDM 10.6.2). This object is that
bus: it picks the destinations, runs lowest-priority arbitration, carries
level-triggered EOIs back to the I/O APICs, and maps the xAPIC register page
on the MMIO bus for the CPU that is running (`current`, set by whatever
schedules the CPUs), since every CPU sees its own APIC at the same address.

Choices, stated:
- IPIs follow the xAPIC's Table 10-3: with the "self" and "all including
  self" shorthands only fixed delivery is valid, the others are dropped;
  the level bit is ignored (IPIs are edge-triggered) and an INIT level
  de-assert has no effect, as on every processor since the Pentium 4;
  reserved delivery modes (3, 7) are dropped.
- Lowest-priority delivery goes to a focus processor if one holds the
  vector, else to the enabled APIC with the lowest arbitration priority;
  ties go to the APIC attached first (the chipset's choice on real
  machines; deterministic here).
"""
from __future__ import annotations

import threading
from collections import Counter

from ringvisor.devices.apic_defs import (
    PAGE, SHORTHAND_ALL, SHORTHAND_OTHERS, SHORTHAND_SELF, Delivery,
)
from ringvisor.devices.lapic import LocalApic
from ringvisor.errors import ConfigError

VALID_IPI_MODES = {Delivery.FIXED, Delivery.LOWEST, Delivery.SMI, Delivery.NMI,
                   Delivery.INIT, Delivery.STARTUP}


class ApicWindow:
    """The register page at one base address, answered by the running CPU's
    APIC if it is enabled and mapped there (else nobody answers)."""

    def __init__(self, bus: "ApicBus", base: int):
        self.bus, self.base = bus, base

    def _apic(self) -> LocalApic | None:
        apic = self.bus.apics[self.bus.current] if self.bus.apics else None
        if apic is not None and apic.hw_enabled and not apic.x2apic and apic.base_address == self.base:
            return apic
        return None

    def io_read(self, offset: int, size: int) -> int:
        apic = self._apic()
        if apic is None:
            self.bus.unclaimed += 1
            return (1 << (8 * size)) - 1
        return apic.mmio_read(offset, size)

    def io_write(self, offset: int, size: int, value: int) -> None:
        apic = self._apic()
        if apic is None:
            self.bus.unclaimed += 1
            return
        apic.mmio_write(offset, size, value)


class ApicBus:
    def __init__(self, mmio=None):
        self.mmio = mmio                 # machine.bus.MmioBus, or None (tests)
        self.apics: list[LocalApic] = []
        self.ioapics: list = []
        self.current = 0                 # index of the CPU whose accesses the page sees
        self.windows: dict[int, ApicWindow] = {}
        self.messages: Counter = Counter()   # delivered, by delivery mode name
        self.unclaimed = 0
        self.unmapped_relocations = 0
        self.lock = threading.RLock()    # shared by every APIC on this bus

    # -- wiring ---------------------------------------------------------------------
    def attach(self, apic: LocalApic) -> None:
        if any(a.initial_id == apic.initial_id for a in self.apics):
            raise ConfigError(f"two local APICs with ID {apic.initial_id}")
        apic.bus = self
        apic.lock = self.lock
        self.apics.append(apic)
        self.relocated(apic)

    def attach_ioapic(self, ioapic) -> None:
        ioapic.bus = self
        ioapic.lock = self.lock
        self.ioapics.append(ioapic)

    def relocated(self, apic: LocalApic) -> None:
        """A CPU moved its APIC (IA32_APIC_BASE): map a window there too."""
        base = apic.base_address
        if base in self.windows:
            return
        window = self._window(base)
        if self.mmio is not None:
            try:
                self.mmio.register(base, PAGE, window, f"local APIC {base:#x}")
            except ConfigError:
                # Moved onto another device's range: that device keeps answering
                # there (a guest that does this gets what it asked for).
                self.unmapped_relocations += 1

    def _window(self, base: int) -> ApicWindow:
        self.windows[base] = ApicWindow(self, base)
        return self.windows[base]

    # -- messages ---------------------------------------------------------------------
    def send_ipi(self, source: LocalApic, mode: int, vector: int, *, logical: bool, dest: int,
                 shorthand: int, assert_level: bool = True, wide: bool = False) -> None:
        """An ICR write of `source` (SDM 10.6.1)."""
        if mode not in VALID_IPI_MODES:
            return
        if mode == Delivery.INIT and not assert_level:
            return                           # INIT level de-assert: no effect on an xAPIC
        if shorthand in (SHORTHAND_SELF, SHORTHAND_ALL) and mode != Delivery.FIXED:
            return
        if shorthand == SHORTHAND_SELF:
            targets = [source]
        elif shorthand == SHORTHAND_ALL:
            targets = list(self.apics)
        elif shorthand == SHORTHAND_OTHERS:
            targets = [a for a in self.apics if a is not source]
        else:
            targets = [a for a in self.apics if a.matches(dest, logical, wide)]
        for apic in self._deliver(targets, mode, vector, False):
            apic.stats.ipis_received += 1

    def deliver(self, dest: int, logical: bool, mode: int, vector: int, level: bool = False) -> None:
        """An interrupt message from an I/O APIC."""
        self._deliver([a for a in self.apics if a.matches(dest, logical)], mode, vector, level)

    def _deliver(self, targets: list[LocalApic], mode: int, vector: int, level: bool) -> list[LocalApic]:
        if mode == Delivery.LOWEST:
            targets = self._lowest_priority(targets, vector)
        for apic in targets:
            apic.accept(mode, vector, level)
        if targets:
            self.messages[Delivery(mode).name] += 1
        return targets

    @staticmethod
    def _lowest_priority(targets: list[LocalApic], vector: int) -> list[LocalApic]:
        able = [a for a in targets if a.hw_enabled and a.sw_enabled]
        if not able:
            return []
        for apic in able:
            if apic.focus(vector):
                return [apic]
        return [min(able, key=LocalApic.apr)]

    def broadcast_eoi(self, vector: int) -> None:
        """A level-triggered interrupt's EOI reaches every I/O APIC."""
        for ioapic in self.ioapics:
            ioapic.eoi(vector)

    # -- virtual time -----------------------------------------------------------------
    def advance_to(self, ns: int) -> None:
        for apic in self.apics:
            apic.advance_to(ns)

    def next_event_ns(self) -> int | None:
        due = [t for t in (a.next_event_ns() for a in self.apics) if t is not None]
        return min(due, default=None)
