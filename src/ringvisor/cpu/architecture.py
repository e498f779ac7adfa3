"""The IA-32 architecture's numbers (Intel SDM): EFLAGS and control-register
bits, segment register numbers, exception vectors, and the exception the CPU
raises. Plain data shared by the CPU's state (core.py), its page walk
(paging.py) and the instruction semantics."""
from __future__ import annotations

# EFLAGS
CF, PF, AF, ZF, SF, TF, IF, DF, OF = 1, 4, 0x10, 0x40, 0x80, 0x100, 0x200, 0x400, 0x800
IOPL_MASK, NT, RF, VM, AC, ID = 0x3000, 0x4000, 0x10000, 0x20000, 0x40000, 0x200000
VIF, VIP = 0x80000, 0x100000      # virtual interrupt flag and pending (VME, PVI: semantics/vme.py)
STATUS = CF | PF | AF | ZF | SF | OF
# Bits software can change on this CPU (a Pentium-class IA-32: AC and ID exist).
EFLAGS_WRITABLE = STATUS | TF | IF | DF | IOPL_MASK | NT | RF | VM | AC | ID

# Control registers
CR0_PE, CR0_MP, CR0_EM, CR0_TS, CR0_ET, CR0_NE = 1, 2, 4, 8, 0x10, 0x20
CR0_WP, CR0_AM, CR0_NW, CR0_CD, CR0_PG = 1 << 16, 1 << 18, 1 << 29, 1 << 30, 1 << 31
CR4_VME, CR4_PVI, CR4_TSD, CR4_DE, CR4_PSE, CR4_PGE = 1, 2, 4, 8, 0x10, 0x80

ES, CS, SS, DS, FS, GS = range(6)
SEG_NAMES = ("es", "cs", "ss", "ds", "fs", "gs")

# Exception vectors
DE, DB, NMI, BP, OFV, BR, UD, NM, DF_, TS, NP, SSF, GP, PFV = 0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14

MASKS = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF, 8: 0xFFFFFFFFFFFFFFFF}


class CpuFault(Exception):
    """An exception raised by the CPU itself (#GP, #PF, ...). `soft` marks the
    trap-like software exceptions (INT3, INTO) whose saved EIP is the next
    instruction and whose gate DPL is checked like INT n."""

    def __init__(self, vector: int, code: int | None = None, soft: bool = False,
                 trap: bool = False):
        super().__init__(vector, code)
        self.vector = vector
        self.code = code
        self.soft = soft
        self.trap = trap or soft       # EIP already points after the instruction

    def __repr__(self) -> str:
        return f"CpuFault({self.vector}, {self.code})"


def gp(code: int = 0):
    return CpuFault(GP, code)


def ud():
    return CpuFault(UD)
