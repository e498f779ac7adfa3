"""A CPU's local APIC in xAPIC mode (Intel SDM vol. 3A chapter 10).

The 4 KiB register page (offsets below), the IA32_APIC_BASE and
IA32_TSC_DEADLINE MSRs, priority and in-service semantics, the local vector
table with LINT0/LINT1, the error status register and the timer
(devices/apic_timer.py); the MSRs, the register page and the ICR are in
devices/lapic_interface.py. IPIs written to the ICR and messages from I/O
APICs travel through an `ApicBus` (devices/apic_bus.py) that knows every CPU's
APIC; the bus also maps the register page of the CPU that is running.

The interface the CPU side calls (nothing here imports the CPU):

- `read_msr(index) -> int | None`, `write_msr(index, value) -> bool`:
  IA32_APIC_BASE (0x1B), IA32_TSC_DEADLINE (0x6E0) and, in x2APIC mode,
  the registers at 0x800-0x8FF (devices/x2apic.py). None/False: not an
  APIC MSR now (the CPU raises #GP). `ApicMsrFault`: #GP(0) too.
- `pending()`: an interrupt waits that the CPU takes when EFLAGS.IF is 1
  (the CPU's INTR; the same protocol as devices/pic8259.PicPair).
  `acknowledge()` is the INTA cycle: the vector to deliver (the highest
  deliverable IRR vector moves into the ISR; an ExtINT vector comes from the
  8259 pair; the spurious vector if the request vanished since `pending()`).
- `take_nmi()`, `take_init()`, `take_sipi() -> vector | None`: NMI (ignores
  IF), INIT (the CPU resets: the bootstrap processor restarts at the reset
  vector, an application processor waits for a SIPI) and start-up (the CPU
  begins in real mode at CS=vector<<8, IP=0). `wait_for_sipi` says whether
  this CPU is parked. `on_wake()` is called when any of these arrives, so a
  machine can wake a halted CPU.
- `advance_to(ns)` / `next_event_ns()`: the timer on the virtual clock, as
  for devices/pit8254.py. `clock()` (injected) gives this CPU's present in
  ns; `tsc()` its time-stamp counter, `ns_per_tsc` ns per TSC tick.
- CPUID (constants in devices/apic_defs.py): `CPUID1_EDX_APIC` (while `hw_enabled`), `CPUID1_ECX_TSC_DEADLINE`,
  `CPUID1_ECX_X2APIC` (if built with x2apic=True), and the initial APIC ID
  in CPUID.1:EBX[31:24] (`cpuid1_ebx_id`).

Choices where the SDM leaves room, stated:
- the APIC is a Pentium 4 style xAPIC: version 0x14 with six LVT entries
  (no CMCI), 8-bit IDs, IPIs are always edge-triggered (Table 10-3), no
  EOI-broadcast suppression; x2APIC mode when asked (devices/x2apic.py);
- register accesses narrower than 32 bits read the bytes of the register;
  narrower writes are ignored (as QEMU); reserved offsets set ESR bit 7;
- an interrupt is accepted the instant it is sent: the delivery-status bits
  of the ICR and the LVT read 0;
- fixed and lowest-priority messages to a software-disabled APIC are
  dropped; NMI, INIT and SIPI are accepted (SDM 10.4.7.2);
- with IA32_APIC_BASE.EN clear the CPU has no APIC: the page does not answer,
  LINT0 is the INTR pin (the 8259 pair) and LINT1 the NMI pin.
"""
from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from ringvisor.devices.apic_defs import *  # noqa: F401,F403  (the register map, re-exported)
from ringvisor.devices.apic_defs import (
    BASE_ADDRESS_MASK, BASE_BSP, BASE_ENABLE, BASE_EXTD, CPUID1_ECX_TSC_DEADLINE, CPUID1_ECX_X2APIC,
    CPUID1_EDX_APIC, DEFAULT_BASE, ERROR, ESR_RECEIVE_ILLEGAL_VECTOR, LINT0, LVT, LVT_LEVEL, LVT_MASKED,
    SPURIOUS_RESET, SVR_ENABLE, SVR_FOCUS_DISABLED, TIMER, Delivery,
)
from ringvisor.devices.apic_defs import ApicMsrFault  # noqa: F401  (raised here, caught by the CPU)
from ringvisor.devices.apic_lock import locked
from ringvisor.devices.apic_timer import NS_PER_BUS_CLOCK, ApicTimer
from ringvisor.devices.lapic_interface import ApicSoftwareInterface


def _highest(bits: int) -> int:
    """Highest vector set in a 256-bit register, -1 if none."""
    return bits.bit_length() - 1


@dataclass
class ApicStats:
    accepted: Counter = field(default_factory=Counter)    # vectors put in the IRR
    delivered: Counter = field(default_factory=Counter)   # vectors acknowledged by the CPU
    ipis_sent: Counter = field(default_factory=Counter)   # by delivery mode name
    ipis_received: int = 0      # IPIs from a local APIC (not I/O APIC messages) that reached this one
    dropped: int = 0            # fixed interrupts to a software-disabled APIC
    spurious: int = 0
    nmis: int = 0
    inits: int = 0
    sipis: int = 0
    timer_expiries: int = 0
    timer_coalesced: int = 0    # periods that passed while the previous one was still in the IRR
    eois: int = 0


class LocalApic(ApicSoftwareInterface):
    def __init__(self, apic_id: int, *, bsp: bool = False, clock: Callable[[], int] = lambda: 0,
                 tsc: Callable[[], int] | None = None, ns_per_tsc: int = NS_PER_BUS_CLOCK,
                 extint=None, tsc_deadline: bool = True, x2apic: bool = False,
                 on_wake: Callable[[], None] | None = None):
        if not 0 <= apic_id < 0xFF:
            raise ValueError(f"xAPIC ID {apic_id} is not 0..254")
        self.initial_id = apic_id
        self.bsp = bsp
        self.clock = clock
        self.tsc = tsc or (lambda: clock() // ns_per_tsc)
        self.extint = extint             # the 8259 pair on LINT0: pending()/acknowledge()
        self.tsc_deadline_supported = tsc_deadline
        self.x2apic_supported = x2apic
        self.on_wake = on_wake
        self.bus = None                  # set by ApicBus.attach
        self.lock = threading.RLock()    # replaced by the bus's lock on attach
        self.timer = ApicTimer(ns_per_tsc)
        self.stats = ApicStats()
        self.lint_levels = [0, 0]
        self.power_on()

    # -- reset ---------------------------------------------------------------------
    def power_on(self) -> None:
        """Power-up or RESET# (SDM 10.4.7.1)."""
        self.base = DEFAULT_BASE | BASE_ENABLE | (BASE_BSP if self.bsp else 0)
        self.id = self.initial_id
        self._reset_registers()
        self.wait_for_sipi = False

    def _reset_registers(self) -> None:
        """The state after power-up and after INIT, but for the APIC ID."""
        self.tpr = self.ldr = 0
        self.dfr = 0xFFFFFFFF
        self.svr = SPURIOUS_RESET
        self.irr = self.isr = self.tmr = 0
        self.esr = self.esr_pending = 0
        self.icr_low = self.icr_high = 0
        self.icr_dest = 0                # x2APIC mode: the ICR's 32-bit destination
        self.lvt = [LVT_MASKED] * len(LVT)
        self.lint_remote_irr = [False, False]
        self.timer.reset()
        self.nmi_pending = False
        self.init_pending = False
        self.sipi_vector: int | None = None
        self.extint_request = False
        self._update()

    # -- state as the SDM defines it ------------------------------------------------
    @property
    def hw_enabled(self) -> bool:
        return bool(self.base & BASE_ENABLE)

    @property
    def sw_enabled(self) -> bool:
        return bool(self.svr & SVR_ENABLE)

    @property
    def x2apic(self) -> bool:
        return self.base & (BASE_ENABLE | BASE_EXTD) == BASE_ENABLE | BASE_EXTD

    @property
    def base_address(self) -> int:
        return self.base & BASE_ADDRESS_MASK

    def ppr(self) -> int:
        """Processor priority (SDM 10.8.3.1)."""
        isrv = max(_highest(self.isr), 0)
        return self.tpr if self.tpr >> 4 >= isrv >> 4 else isrv & 0xF0

    def apr(self) -> int:
        """Arbitration priority, for lowest-priority delivery (SDM 10.6.2.4)."""
        isrv, irrv = max(_highest(self.isr), 0), max(_highest(self.irr), 0)
        if self.tpr >> 4 >= irrv >> 4 and self.tpr >> 4 > isrv >> 4:
            return self.tpr
        return max(self.tpr & 0xF0, isrv & 0xF0, irrv & 0xF0)

    def _deliverable(self) -> int:
        """The IRR vector the CPU would take now, -1 if none."""
        irrv = _highest(self.irr)
        if irrv >= 0 and irrv >> 4 > self.ppr() >> 4:
            return irrv
        return -1

    def _extint_open(self) -> bool:
        if self.extint is None:
            return False
        if not self.hw_enabled:
            return True                       # LINT0 is the INTR pin
        lint0 = self.lvt[LINT0]
        return self.extint_request or (
            not lint0 & LVT_MASKED and (lint0 >> 8) & 7 == Delivery.EXTINT)

    def _update(self) -> None:
        was = getattr(self, "_out", False)
        self._extint = self._extint_open()
        self._out = self.hw_enabled and self._deliverable() >= 0
        if self._out and not was:
            self._wake()

    def _wake(self) -> None:
        if self.on_wake is not None:
            self.on_wake()

    # -- the CPU side ----------------------------------------------------------------
    def pending(self) -> bool:
        return self._out or (self._extint and self.extint.pending())

    has_interrupt = pending

    @locked
    def acknowledge(self) -> int:
        if self._extint and self.extint.pending():
            self.extint_request = False
            self._update()
            return self.extint.acknowledge()
        vector = self._deliverable() if self.hw_enabled else -1
        if vector < 0:
            self.stats.spurious += 1
            return self.svr & 0xFF
        bit = 1 << vector
        self.irr &= ~bit
        self.isr |= bit
        self.stats.delivered[vector] += 1
        self._update()
        return vector

    @locked
    def take_nmi(self) -> bool:
        taken, self.nmi_pending = self.nmi_pending, False
        return taken

    @locked
    def take_init(self) -> bool:
        taken, self.init_pending = self.init_pending, False
        return taken

    @locked
    def take_sipi(self) -> int | None:
        vector, self.sipi_vector = self.sipi_vector, None
        return vector

    # -- virtual time -------------------------------------------------------------------
    @locked
    def advance_to(self, ns: int) -> None:
        n = self.timer.expiries(ns)
        if n:
            self.stats.timer_expiries += n
            if not self.lvt[TIMER] & LVT_MASKED and self.irr >> (self.lvt[TIMER] & 0xFF) & 1:
                self.stats.timer_coalesced += 1
            self.stats.timer_coalesced += n - 1
            self._fire_lvt(TIMER)

    def next_event_ns(self) -> int | None:
        return self.timer.next_due_ns

    # -- interrupt acceptance -------------------------------------------------------
    @locked
    def accept(self, mode: int, vector: int, level: bool = False) -> None:
        """A message from the APIC bus (an IPI or an I/O APIC interrupt)."""
        if not self.hw_enabled:
            return
        if mode in (Delivery.FIXED, Delivery.LOWEST):
            if not self.sw_enabled:
                self.stats.dropped += 1
            elif vector < 16:
                self._error(ESR_RECEIVE_ILLEGAL_VECTOR)
            else:
                self._set_irr(vector, level)
        elif mode == Delivery.NMI:
            self._nmi()
        elif mode == Delivery.INIT:
            self._init()
        elif mode == Delivery.STARTUP:
            if self.wait_for_sipi:             # a second SIPI finds the CPU running: ignored
                self.wait_for_sipi = False
                self.sipi_vector = vector
                self.stats.sipis += 1
                self._wake()
        elif mode == Delivery.EXTINT:
            self.extint_request = True
            self._update()
            self._wake()
        # SMI: no system-management mode on the soft CPU; the message is dropped.

    def _set_irr(self, vector: int, level: bool) -> None:
        bit = 1 << vector
        self.irr |= bit
        self.tmr = self.tmr | bit if level else self.tmr & ~bit
        self.stats.accepted[vector] += 1
        self._update()

    def _nmi(self) -> None:
        self.nmi_pending = True
        self.stats.nmis += 1
        self._wake()

    def _init(self) -> None:
        """INIT (SDM 10.4.7.3): the APIC resets but keeps its ID; the CPU is
        told through take_init(); an AP then waits for a SIPI."""
        apic_id = self.id
        self._reset_registers()
        self.id = apic_id
        self.init_pending = True
        self.wait_for_sipi = not self.base & BASE_BSP
        self.stats.inits += 1
        self._wake()

    def _error(self, bit: int) -> None:
        self.esr_pending |= bit
        entry = self.lvt[ERROR]
        if not entry & LVT_MASKED and entry & 0xFF >= 16:
            self._set_irr(entry & 0xFF, False)
        elif not entry & LVT_MASKED:
            self.esr_pending |= ESR_RECEIVE_ILLEGAL_VECTOR

    def _fire_lvt(self, index: int) -> None:
        """A local interrupt source signals through its LVT entry."""
        entry = self.lvt[index]
        if entry & LVT_MASKED:
            return
        mode = Delivery.FIXED if index in (TIMER, ERROR) else (entry >> 8) & 7
        vector = entry & 0xFF
        if mode == Delivery.FIXED:
            level = bool(entry & LVT_LEVEL) and index == LINT0
            if vector < 16:
                self._error(ESR_RECEIVE_ILLEGAL_VECTOR)
                return
            if level:
                self.lint_remote_irr[0] = True
            self._set_irr(vector, level)
        elif mode == Delivery.NMI:
            self._nmi()
        elif mode == Delivery.INIT:
            self._init()
        elif mode == Delivery.EXTINT:
            self._update()

    # -- LINT0/LINT1 pins ------------------------------------------------------------------
    @locked
    def set_lint(self, pin: int, level: int) -> None:
        """The level of LINT0/LINT1. In ExtINT mode LINT0's vector comes from
        `extint` (the 8259 pair), not from this pin."""
        rose = level and not self.lint_levels[pin]
        self.lint_levels[pin] = 1 if level else 0
        if not self.hw_enabled:
            if pin == 1 and rose:
                self._nmi()                    # LINT1 is the NMI pin
            return
        index = LINT0 + pin
        entry = self.lvt[index]
        level_triggered = pin == 0 and entry & LVT_LEVEL and (entry >> 8) & 7 == Delivery.FIXED
        if level_triggered:
            if level and not self.lint_remote_irr[0]:
                self._fire_lvt(index)
        elif rose:
            self._fire_lvt(index)

    # -- EOI -------------------------------------------------------------------------------
    def _eoi(self) -> None:
        vector = _highest(self.isr)
        if vector < 0:
            return
        bit = 1 << vector
        self.isr &= ~bit
        self.stats.eois += 1
        if self.tmr & bit:
            entry = self.lvt[LINT0]
            if self.lint_remote_irr[0] and entry & 0xFF == vector:
                self.lint_remote_irr[0] = False
                self._update()
                self.set_lint(0, self.lint_levels[0])   # still asserted: again
            if self.bus is not None:
                self.bus.broadcast_eoi(vector)
        self._update()

    # -- destination matching (SDM 10.6.2) -----------------------------------------------
    def matches(self, dest: int, logical: bool, wide: bool = False) -> bool:
        """`wide`: a 32-bit destination from an x2APIC-mode ICR; 8 bits
        otherwise (xAPIC ICRs, I/O APIC messages). Mixing modes is not
        architectural: an x2APIC-mode APIC answers 8-bit logical messages
        only when broadcast."""
        if self.x2apic:
            if dest == (0xFFFFFFFF if wide else 0xFF):
                return True
            if not logical:
                return dest == self.id
            from ringvisor.devices.x2apic import logical_id
            ldr = logical_id(self.id)
            return wide and dest >> 16 == ldr >> 16 and bool(dest & ldr & 0xFFFF)
        if wide:
            dest = 0xFF if dest == 0xFFFFFFFF else dest
        if not logical:
            return dest == 0xFF or dest == self.id
        ldr = self.ldr >> 24
        if self.dfr >> 28 == 0xF:             # flat model: a bit per APIC
            return bool(dest & ldr)
        cluster = dest >> 4                   # cluster model: 4-bit cluster, 4-bit mask
        return (cluster == 0xF or cluster == ldr >> 4) and bool(dest & ldr & 0xF)

    def focus(self, vector: int) -> bool:
        """Lowest-priority delivery prefers a focus processor: one already
        servicing or holding the vector (unless SVR disables focus checking)."""
        return not self.svr & SVR_FOCUS_DISABLED and bool((self.isr | self.irr) >> vector & 1)

def cpuid1(apic: LocalApic, ebx: int, ecx: int, edx: int) -> tuple[int, int, int]:
    """CPUID.1's EBX, ECX, EDX with this APIC reported (SDM vol. 2 CPUID):
    EDX.APIC follows IA32_APIC_BASE.EN, as on hardware."""
    ebx = (ebx & 0x00FFFFFF) | cpuid1_ebx_id(apic)
    edx = edx | CPUID1_EDX_APIC if apic.hw_enabled else edx & ~CPUID1_EDX_APIC
    if apic.tsc_deadline_supported:
        ecx |= CPUID1_ECX_TSC_DEADLINE
    if apic.x2apic_supported:
        ecx |= CPUID1_ECX_X2APIC
    return ebx, ecx, edx


def cpuid1_ebx_id(apic: LocalApic) -> int:
    """CPUID.1:EBX bits 31:24, the initial APIC ID."""
    return apic.initial_id << 24
