"""The local APIC's software interface (Intel SDM vol. 3A 10.4-10.6): the
IA32_APIC_BASE and IA32_TSC_DEADLINE MSRs, the 4 KiB register page, and the
IPIs written to the ICR. A mixin of `LocalApic` (devices/lapic.py), which
holds the state these read and write and the delivery rules they call."""
from __future__ import annotations

from ringvisor.devices import x2apic
from ringvisor.devices.apic_defs import (
    BASE_ADDRESS_MASK, BASE_BSP, BASE_ENABLE, BASE_EXTD, ESR_ILLEGAL_REGISTER, ESR_SEND_ILLEGAL_VECTOR,
    ICR_LEVEL_ASSERT, ICR_LOGICAL, ICR_WRITABLE, LINT0, LINT1, LVT, LVT_BY_OFFSET, LVT_LEVEL,
    LVT_MASKED, LVT_REMOTE_IRR, LVT_TIMER_MODE_SHIFT, MAX_LVT, MODE_NAMES, MSR_APIC_BASE,
    MSR_TSC_DEADLINE, READABLE, SVR_WRITABLE, TIMER, VERSION, X2APIC_MSRS, ApicMsrFault, Delivery, Reg,
)
from ringvisor.devices.apic_lock import locked
from ringvisor.devices.apic_timer import ONE_SHOT, PERIODIC, TSC_DEADLINE


class ApicSoftwareInterface:
    # -- MSRs -------------------------------------------------------------------------
    @locked
    def read_msr(self, index: int) -> int | None:
        if X2APIC_MSRS[0] <= index < X2APIC_MSRS[1]:
            if not self.x2apic:
                return None                    # #GP outside x2APIC mode
            return x2apic.read(self, index)
        if index == MSR_APIC_BASE:
            return self.base
        if index == MSR_TSC_DEADLINE and self.tsc_deadline_supported:
            self.advance_to(self.clock())
            return self.timer.deadline if self.timer.mode == TSC_DEADLINE else 0
        return None

    @locked
    def write_msr(self, index: int, value: int) -> bool:
        if X2APIC_MSRS[0] <= index < X2APIC_MSRS[1]:
            if not self.x2apic:
                return False                   # #GP outside x2APIC mode
            x2apic.write(self, index, value)
            return True
        if index == MSR_APIC_BASE:
            self._write_base(value)
            return True
        if index == MSR_TSC_DEADLINE and self.tsc_deadline_supported:
            now = self.clock()
            self.advance_to(now)
            self.timer.arm_deadline(value, self.tsc(), now)
            self.advance_to(now)               # a deadline already past fires at once
            return True
        return False

    def _write_base(self, value: int) -> None:
        extd = BASE_EXTD if self.x2apic_supported else 0
        if value & ~(BASE_ADDRESS_MASK | BASE_ENABLE | BASE_BSP | extd):
            raise ApicMsrFault(f"IA32_APIC_BASE: reserved bits in {value:#x}")
        enable, to_x2 = bool(value & BASE_ENABLE), bool(value & BASE_EXTD)
        # The mode transitions of SDM 10.12.5 (Figure 10-27) that are invalid.
        if to_x2 and not enable:
            raise ApicMsrFault("IA32_APIC_BASE: EXTD without EN is invalid")
        if self.x2apic and enable and not to_x2:
            raise ApicMsrFault("IA32_APIC_BASE: x2APIC to xAPIC mode directly is invalid")
        if not self.hw_enabled and to_x2:
            raise ApicMsrFault("IA32_APIC_BASE: disabled to x2APIC mode directly is invalid")
        was_enabled, was_x2, old_address = self.hw_enabled, self.x2apic, self.base_address
        # BSP is set by hardware at reset; software cannot change it.
        self.base = (value & (BASE_ADDRESS_MASK | BASE_ENABLE | BASE_EXTD)) | (self.base & BASE_BSP)
        if was_enabled and not self.hw_enabled:
            self._reset_registers()            # SDM 10.4.3: back to the power-up state
            self.id = self.initial_id
        elif self.x2apic and not was_x2:
            self.id = self.initial_id          # the x2APIC ID is the hardware's
        self._update()
        if self.bus is not None and self.base_address != old_address:
            self.bus.relocated(self)

    # -- the register page -------------------------------------------------------------
    @locked
    def mmio_read(self, offset: int, size: int) -> int:
        reg, shift = offset & ~0xF, (offset & 0xF) * 8
        if shift >= 32:
            return 0
        value = self.read_register(reg)
        return (value >> shift) & ((1 << (8 * size)) - 1)

    @locked
    def mmio_write(self, offset: int, size: int, value: int) -> None:
        if size != 4 or offset & 0xF:
            return
        self.write_register(offset, value & 0xFFFFFFFF)

    def read_register(self, reg: int) -> int:
        if reg not in READABLE:
            self._error(ESR_ILLEGAL_REGISTER)
            return 0
        now = self.clock()
        self.advance_to(now)
        if reg in LVT_BY_OFFSET:
            i = LVT_BY_OFFSET[reg]
            remote = LVT_REMOTE_IRR if i == LINT0 and self.lint_remote_irr[0] else 0
            return self.lvt[i] | remote
        for base, bits in ((Reg.ISR, self.isr), (Reg.TMR, self.tmr), (Reg.IRR, self.irr)):
            if base <= reg < base + 0x80:
                return (bits >> (32 * ((reg - base) >> 4))) & 0xFFFFFFFF
        return {
            Reg.ID: self.id << 24,
            Reg.VERSION: VERSION | MAX_LVT << 16,
            Reg.TPR: self.tpr, Reg.APR: self.apr(), Reg.PPR: self.ppr(),
            Reg.EOI: 0, Reg.RRD: 0,
            Reg.LDR: self.ldr, Reg.DFR: self.dfr, Reg.SVR: self.svr, Reg.ESR: self.esr,
            Reg.ICR_LOW: self.icr_low, Reg.ICR_HIGH: self.icr_high,
            Reg.TIMER_INITIAL: self.timer.initial, Reg.TIMER_CURRENT: self.timer.current(now),
            Reg.TIMER_DIVIDE: self.timer.dcr,
        }[reg]

    def write_register(self, reg: int, value: int) -> None:
        now = self.clock()
        self.advance_to(now)
        if reg in LVT_BY_OFFSET:
            self._write_lvt(LVT_BY_OFFSET[reg], value, now)
        elif reg == Reg.ID:
            self.id = value >> 24
        elif reg == Reg.TPR:
            self.tpr = value & 0xFF
            self._update()
        elif reg == Reg.EOI:
            self._eoi()
        elif reg == Reg.LDR:
            self.ldr = value & 0xFF000000
        elif reg == Reg.DFR:
            self.dfr = value | 0x0FFFFFFF
        elif reg == Reg.SVR:
            self._write_svr(value)
        elif reg == Reg.ESR:
            self.esr, self.esr_pending = self.esr_pending, 0
        elif reg == Reg.ICR_HIGH:
            self.icr_high = value & 0xFF000000
        elif reg == Reg.ICR_LOW:
            self.icr_low = value & ICR_WRITABLE
            self._send_ipi()
        elif reg == Reg.TIMER_INITIAL:
            self.timer.load(value, now)
        elif reg == Reg.TIMER_DIVIDE:
            self.timer.set_divide(value, now)
        elif reg not in READABLE:
            self._error(ESR_ILLEGAL_REGISTER)
        # The rest (version, APR, PPR, RRD, ISR, TMR, IRR, current count) is read-only.

    def _write_svr(self, value: int) -> None:
        self.svr = value & SVR_WRITABLE
        if not self.sw_enabled:
            self.lvt = [entry | LVT_MASKED for entry in self.lvt]
        self._update()

    def _write_lvt(self, index: int, value: int, now: int) -> None:
        writable = LVT[index][2]
        if index == TIMER and not self.tsc_deadline_supported:
            writable &= ~(2 << LVT_TIMER_MODE_SHIFT)
        entry = value & writable
        if not self.sw_enabled:
            entry |= LVT_MASKED              # SDM 10.4.7.2: masks cannot be cleared
        was_masked = self.lvt[index] & LVT_MASKED
        self.lvt[index] = entry
        if index == TIMER:
            mode = (entry >> LVT_TIMER_MODE_SHIFT) & 3
            self.timer.set_mode({1: PERIODIC, 2: TSC_DEADLINE}.get(mode, ONE_SHOT), now)
        self._update()
        if index in (LINT0, LINT1) and was_masked and not entry & LVT_MASKED \
                and self.lint_levels[index - LINT0] and entry & LVT_LEVEL:
            self.set_lint(index - LINT0, self.lint_levels[index - LINT0])

    def _send_ipi(self) -> None:
        icr = self.icr_low
        mode, vector = (icr >> 8) & 7, icr & 0xFF
        self.stats.ipis_sent[MODE_NAMES.get(mode, f"reserved{mode}")] += 1
        if mode in (Delivery.FIXED, Delivery.LOWEST) and vector < 16:
            self._error(ESR_SEND_ILLEGAL_VECTOR)
            return
        if self.bus is not None:
            dest = self.icr_dest if self.x2apic else self.icr_high >> 24
            self.bus.send_ipi(self, mode, vector, logical=bool(icr & ICR_LOGICAL), dest=dest,
                              shorthand=(icr >> 18) & 3, assert_level=bool(icr & ICR_LEVEL_ASSERT),
                              wide=self.x2apic)

    def send_self_ipi(self, vector: int) -> None:
        """x2APIC SELF IPI: a fixed, edge-triggered IPI to this APIC."""
        self.stats.ipis_sent["FIXED"] += 1
        if vector < 16:
            self._error(ESR_SEND_ILLEGAL_VECTOR)
        else:
            self.accept(Delivery.FIXED, vector)


# --- for a monitor that virtualizes the APIC (hw, trap, bt) ------------------------------
def guest_read_msr(apic, index: int) -> int | None:
    """RDMSR as the guest's CPU answers it: the value, or None for #GP(0)
    (not an APIC MSR now, or one the APIC refuses)."""
    try:
        return apic.read_msr(index)
    except ApicMsrFault:
        return None


def guest_write_msr(apic, index: int, value: int) -> bool:
    """WRMSR as the guest's CPU takes it: True, or False for #GP(0) (not an
    APIC MSR now, reserved bits, a mode transition the SDM forbids)."""
    try:
        return bool(apic.write_msr(index, value))
    except ApicMsrFault:
        return False
