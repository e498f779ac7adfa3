"""The local APIC's register map and field encodings (Intel SDM vol. 3A
chapter 10), shared by devices/lapic.py, apic_bus.py, x2apic.py and ioapic.py."""
from __future__ import annotations

from enum import IntEnum

DEFAULT_BASE = 0xFEE00000
PAGE = 0x1000
MSR_APIC_BASE = 0x1B
MSR_TSC_DEADLINE = 0x6E0
X2APIC_MSRS = (0x800, 0x900)
BASE_BSP, BASE_EXTD, BASE_ENABLE = 1 << 8, 1 << 10, 1 << 11
BASE_ADDRESS_MASK = 0xFFFFF000          # MAXPHYADDR 32: no PAE on the soft CPU
VERSION = 0x14
MAX_LVT = 5
SPURIOUS_RESET = 0xFF

CPUID1_EDX_APIC = 1 << 9
CPUID1_ECX_TSC_DEADLINE = 1 << 24
CPUID1_ECX_X2APIC = 1 << 21


class Reg(IntEnum):
    ID = 0x020
    VERSION = 0x030
    TPR = 0x080
    APR = 0x090
    PPR = 0x0A0
    EOI = 0x0B0
    RRD = 0x0C0
    LDR = 0x0D0
    DFR = 0x0E0
    SVR = 0x0F0
    ISR = 0x100          # 8 registers of 32 vectors each, 16 bytes apart
    TMR = 0x180
    IRR = 0x200
    ESR = 0x280
    ICR_LOW = 0x300
    ICR_HIGH = 0x310
    LVT_TIMER = 0x320
    LVT_ERROR = 0x370
    TIMER_INITIAL = 0x380
    TIMER_CURRENT = 0x390
    TIMER_DIVIDE = 0x3E0


class Delivery(IntEnum):
    FIXED = 0
    LOWEST = 1
    SMI = 2
    NMI = 4
    INIT = 5
    STARTUP = 6
    EXTINT = 7


MODE_NAMES = {m.value: m.name for m in Delivery}


# Local vector table: name, offset, writable bits (SDM Figure 10-8).
LVT = (("timer", 0x320, 0x000700FF), ("thermal", 0x330, 0x000107FF),
       ("perf", 0x340, 0x000107FF), ("lint0", 0x350, 0x0001A7FF),
       ("lint1", 0x360, 0x0001A7FF), ("error", 0x370, 0x000100FF))
LVT_BY_OFFSET = {off: i for i, (_, off, _) in enumerate(LVT)}
TIMER, THERMAL, PERF, LINT0, LINT1, ERROR = range(6)
LVT_MASKED = 1 << 16
LVT_LEVEL = 1 << 15
LVT_REMOTE_IRR = 1 << 14
LVT_TIMER_MODE_SHIFT = 17

SVR_ENABLE = 1 << 8
SVR_WRITABLE = 0x3FF                   # vector, APIC enable, focus processor checking
SVR_FOCUS_DISABLED = 1 << 9

# Error status register bits (SDM Figure 10-9).
ESR_SEND_ILLEGAL_VECTOR = 1 << 5
ESR_RECEIVE_ILLEGAL_VECTOR = 1 << 6
ESR_ILLEGAL_REGISTER = 1 << 7

ICR_WRITABLE = 0x000CCFFF              # vector, mode, dest mode, level, trigger, shorthand
ICR_LOGICAL = 1 << 11
ICR_LEVEL_ASSERT = 1 << 14
ICR_TRIGGER_LEVEL = 1 << 15
SHORTHAND_NONE, SHORTHAND_SELF, SHORTHAND_ALL, SHORTHAND_OTHERS = range(4)

READABLE = {Reg.ID, Reg.VERSION, Reg.TPR, Reg.APR, Reg.PPR, Reg.EOI, Reg.RRD, Reg.LDR, Reg.DFR,
            Reg.SVR, Reg.ESR, Reg.ICR_LOW, Reg.ICR_HIGH, Reg.TIMER_INITIAL, Reg.TIMER_CURRENT,
            Reg.TIMER_DIVIDE, *LVT_BY_OFFSET,
            *(base + 16 * i for base in (Reg.ISR, Reg.TMR, Reg.IRR) for i in range(8))}


class ApicMsrFault(Exception):
    """A RDMSR/WRMSR the APIC refuses: the CPU raises #GP(0)."""
