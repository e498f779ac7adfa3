"""Shared helpers for the local APIC tests (SDM vol. 3A chapter 10, xAPIC mode)."""
from ringvisor.devices.lapic import LocalApic, Reg

LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR = (
    0x320, 0x330, 0x340, 0x350, 0x360, 0x370)
MASKED = 1 << 16


class Clock:
    def __init__(self):
        self.ns = 0

    def __call__(self):
        return self.ns


def rd(apic, reg):
    return apic.mmio_read(reg, 4)


def wr(apic, reg, value):
    apic.mmio_write(reg, 4, value)


def enabled(apic_id=0, **kw):
    apic = LocalApic(apic_id, **kw)
    wr(apic, Reg.SVR, 0x1FF)
    return apic


def isr_bits(apic):
    return sum(rd(apic, Reg.ISR + 16 * i) << (32 * i) for i in range(8))


def irr_bits(apic):
    return sum(rd(apic, Reg.IRR + 16 * i) << (32 * i) for i in range(8))
