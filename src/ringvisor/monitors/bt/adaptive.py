"""Adaptive binary translation of page-table stores (Adams & Agesen,
ASPLOS 2006, section 3).

A copied kernel store into a traced guest page table costs two traps: the
write-protection #PF and the #DB of the single step that lets it through.
When a translated instruction takes that #PF once, the monitor retranslates
it as a "pte store" callout: the one trap performs the store on the guest's
behalf and mirrors it into the shadows.

Only plain MOV stores are performed here (88, 89, C6 /0, C7 /0, byte, word
or dword, 32-bit addressing, segment overrides allowed), with the checks
the CPU makes in its order: the segment (null, limit, expand-down,
writable), then the guest's page walk (#PF with the guest's error code,
A/D bits set). Anything else -- XCHG, CMPXCHG, OR/AND to memory, REP STOS,
a store split across two pages, a target outside guest RAM -- is never
retranslated or, at a retranslated site whose bytes changed, runs as
before: one instruction single-stepped from the guest's code.
"""
from __future__ import annotations

from ringvisor.monitors.common.guest_mmu import GP, SS_FAULT, VirtualFault
from ringvisor.monitors.common.operands import SEGS, effective, linear, reg

PTE_STORE = "pte store"
# A retranslated site that stores this many times in a row to memory that is
# not a traced page table (a table being filled before it is used) goes back
# to being copied: a trap per store costs more there than the two it saves
# elsewhere. It is retranslated at its next trap on a traced table, and then
# needs twice as many such stores to go back again.
MISS_LIMIT = 8

STORES = {"88": 1, "89": 0, "C6 /0": 1, "C7 /0": 0}      # opcode -> width (0: the operand size)
PREFIXES = frozenset({0x26, 0x36, 0x3E, 0x64, 0x65, 0x66})  # CS (0x2E) is a step callout anyway
SS = SEGS.index("ss")


def handled(ins) -> bool:
    """Is this a store form `store` performs exactly?"""
    return (ins.row is not None and not ins.ud and ins.mem and ins.asz == 4
            and ins.row.opcode in STORES and all(p in PREFIXES for p in ins.prefixes))


def _width(ins) -> int:
    return STORES[ins.row.opcode] or ins.osz


def _value(ins, st, n: int) -> int:
    if ins.row.opcode.startswith("C"):
        return ins.imm & ((1 << (8 * n)) - 1)
    return reg(st, ins.reg, n)


def store(mon, st, ins) -> int | None:
    """Perform the guest's store: its physical address, or None when it must
    run on the CPU instead (split across pages, outside guest RAM). Raises
    VirtualFault for the guest's own #GP/#SS/#PF, having changed nothing."""
    n = _width(ins)
    seg, off = effective(ins, st)
    lin = linear(st, seg, off, n)                       # null, not present, limit, expand-down
    s = getattr(st, SEGS[seg])
    if s.type & 8 or not s.type & 2:                    # code, or read-only data
        raise VirtualFault(SS_FAULT if seg == SS else GP, 0)
    if (lin & 0xFFF) + n > 0x1000 or lin + n > mon.region.linear_base:
        return None
    phys = mon.gmmu.walk(lin, True, mon.vcpu.cpl == 3)
    if mon.region.contains(phys) or phys + n > mon.memory.size:
        return None                                     # the CPU's path reports it
    data = _value(ins, st, n).to_bytes(n, "little")
    mm = mon.gmmu.mm
    if mm[phys:phys + n] != data:                       # as the step: mirror only what changed
        mm[phys:phys + n] = data
        mon.gmmu.on_write(phys, n)
    return phys
