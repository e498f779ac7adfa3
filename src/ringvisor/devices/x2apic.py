"""x2APIC mode of the local APIC (Intel SDM vol. 3A 10.12): the registers
as MSRs 0x800-0x8FF, reached with RDMSR/WRMSR once IA32_APIC_BASE.EXTD is
set (only where the CPU offers it: `LocalApic(x2apic=True)`, CPUID.1:ECX
bit 21).

MSR 0x800 + (xAPIC offset >> 4) maps each register, except: no DFR (0x80E)
and no ICR high half (0x831): the ICR is one 64-bit MSR (0x830, the
destination in bits 63:32); the ID (0x802) and the LDR (0x80D) are
read-only, the LDR derived from the ID (cluster ID = ID[19:4] in bits 31:16,
one bit 1 << ID[3:0] below); SELF IPI (0x83F) is new and write-only. RDMSR of
a write-only or missing register, WRMSR of a read-only one, WRMSR of a
non-zero value to EOI or ESR, or of a set reserved bit anywhere, raise
#GP(0) (`ApicMsrFault`). The upper halves of every MSR but the ICR are
reserved.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ringvisor.devices.apic_defs import ICR_WRITABLE, LVT, LVT_TIMER_MODE_SHIFT, SVR_WRITABLE, ApicMsrFault, Reg

if TYPE_CHECKING:
    from ringvisor.devices.lapic import LocalApic

MSR_BASE, MSR_END = 0x800, 0x900
MSR_ICR = 0x830
MSR_SELF_IPI = 0x83F
DCR_WRITABLE = 0xB
LVT_OFFSETS = frozenset(offset for _, offset, _ in LVT)
LVT_READ_ONLY = (1 << 12) | (1 << 14)    # delivery status, remote IRR: ignored on write

# Registers by MSR: (xAPIC offset, access) with access "rw", "ro" or "wo".
REGISTERS = {
    0x802: (Reg.ID, "ro"), 0x803: (Reg.VERSION, "ro"), 0x808: (Reg.TPR, "rw"),
    0x80A: (Reg.PPR, "ro"), 0x80B: (Reg.EOI, "wo"), 0x80D: (Reg.LDR, "ro"),
    0x80F: (Reg.SVR, "rw"), 0x828: (Reg.ESR, "rw"), MSR_ICR: (Reg.ICR_LOW, "rw"),
    0x838: (Reg.TIMER_INITIAL, "rw"), 0x839: (Reg.TIMER_CURRENT, "ro"),
    0x83E: (Reg.TIMER_DIVIDE, "rw"), MSR_SELF_IPI: (None, "wo"),
    **{0x810 + i: (Reg.ISR + 16 * i, "ro") for i in range(8)},
    **{0x818 + i: (Reg.TMR + 16 * i, "ro") for i in range(8)},
    **{0x820 + i: (Reg.IRR + 16 * i, "ro") for i in range(8)},
    **{MSR_BASE + (offset >> 4): (offset, "rw") for _, offset, _ in LVT},
}


def logical_id(x2apic_id: int) -> int:
    """The LDR of x2APIC mode (SDM 10.12.10.2)."""
    return (x2apic_id >> 4) << 16 | 1 << (x2apic_id & 0xF)


def _writable(apic: "LocalApic", offset: int) -> int:
    """Bits a WRMSR may set without #GP."""
    if offset == Reg.TPR:
        return 0xFF
    if offset == Reg.SVR:
        return SVR_WRITABLE
    if offset == Reg.TIMER_INITIAL:
        return 0xFFFFFFFF
    if offset == Reg.TIMER_DIVIDE:
        return DCR_WRITABLE
    if offset in (Reg.EOI, Reg.ESR):
        return 0
    for index, (_, lvt_offset, writable) in enumerate(LVT):
        if offset == lvt_offset:
            if index == 0 and not apic.tsc_deadline_supported:
                writable &= ~(2 << LVT_TIMER_MODE_SHIFT)
            return writable | LVT_READ_ONLY
    raise AssertionError(f"no write mask for {offset:#x}")


def read(apic: "LocalApic", index: int) -> int:
    if index not in REGISTERS or REGISTERS[index][1] == "wo":
        raise ApicMsrFault(f"RDMSR {index:#x}: not a readable x2APIC register")
    offset = REGISTERS[index][0]
    if offset == Reg.ID:
        return apic.id
    if offset == Reg.LDR:
        return logical_id(apic.id)
    if offset == Reg.ICR_LOW:
        return apic.icr_dest << 32 | apic.icr_low
    return apic.read_register(offset)


def write(apic: "LocalApic", index: int, value: int) -> None:
    if index not in REGISTERS or REGISTERS[index][1] == "ro":
        raise ApicMsrFault(f"WRMSR {index:#x}: not a writable x2APIC register")
    offset = REGISTERS[index][0]
    if index == MSR_ICR:
        if value & 0xFFFFFFFF & ~ICR_WRITABLE:
            raise ApicMsrFault(f"WRMSR ICR: reserved bits in {value:#x}")
        apic.icr_dest = value >> 32
        apic.write_register(Reg.ICR_LOW, value & 0xFFFFFFFF)
        return
    if index == MSR_SELF_IPI:
        if value & ~0xFF:
            raise ApicMsrFault(f"WRMSR SELF IPI: reserved bits in {value:#x}")
        apic.send_self_ipi(value)
        return
    if value & ~_writable(apic, offset):
        raise ApicMsrFault(f"WRMSR {index:#x}: reserved bits in {value:#x}")
    apic.write_register(offset, value & ~LVT_READ_ONLY if offset in LVT_OFFSETS else value)
