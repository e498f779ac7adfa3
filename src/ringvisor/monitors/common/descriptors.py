"""Segment descriptors and gates in their architectural 8-byte form (SDM
vol. 3 3.4.5, 6.11): encoding for the tables the monitor builds, decoding
through the soft CPU's `Desc` (plain data, shared so there is one reading of
the format), and the hidden-cache `Segment` a descriptor loads."""
from __future__ import annotations

from ringvisor.cpu.semantics.segments import Desc
from ringvisor.cpu_state import Segment

# Descriptor types (S=0 system types; S=1 code/data types use bit 3 = code).
TSS32_AVAILABLE, TSS32_BUSY = 9, 11
INTERRUPT_GATE32, TRAP_GATE32 = 14, 15
CODE_EXEC_ONLY, CODE_EXEC_READ, DATA_READ_WRITE = 0x8, 0xA, 0x2
ACCESSED = 1


def encode_segment(base: int, limit: int, type_: int, dpl: int, *, s: bool = True,
                   present: bool = True, db: bool = True, avl: bool = False) -> int:
    """A code/data/system descriptor; a limit above 1 MiB is stored in 4 KiB
    units (its low 12 bits must then be all ones)."""
    g = limit > 0xFFFFF
    raw = limit >> 12 if g else limit
    lo = (raw & 0xFFFF) | ((base & 0xFFFF) << 16)
    hi = ((base >> 16) & 0xFF) | (type_ << 8) | (int(s) << 12) | (dpl << 13) | (int(present) << 15) \
        | (raw & 0xF0000) | (int(avl) << 20) | (int(db) << 22) | (int(g) << 23) | (base & 0xFF000000)
    return lo | (hi << 32)


def encode_gate(selector: int, offset: int, type_: int = INTERRUPT_GATE32, dpl: int = 0) -> int:
    lo = (offset & 0xFFFF) | (selector << 16)
    hi = (offset & 0xFFFF0000) | 0x8000 | (dpl << 13) | (type_ << 8)
    return lo | (hi << 32)


def decode(raw: int, addr: int = 0) -> Desc:
    return Desc(raw & 0xFFFFFFFF, raw >> 32, addr)


def raw_of(d: Desc) -> int:
    return d.lo | (d.hi << 32)


def with_fields(d: Desc, *, dpl: int | None = None, present: bool | None = None,
                limit: int | None = None) -> int:
    """`d` re-encoded with some fields replaced (base, type and flags kept)."""
    hi = d.hi
    if dpl is not None:
        hi = (hi & ~0x6000) | (dpl << 13)
    if present is not None:
        hi = (hi & ~0x8000) | (int(present) << 15)
    lo = d.lo
    if limit is not None:
        g = limit > 0xFFFFF
        raw = limit >> 12 if g else limit
        lo = (lo & 0xFFFF0000) | (raw & 0xFFFF)
        hi = (hi & ~0x8F0000) | (raw & 0xF0000) | (int(g) << 23)
    return lo | (hi << 32)


def segment_cache(d: Desc, selector: int) -> Segment:
    """The hidden part of a segment register loaded from `d`."""
    return d.segment(selector)


def is_null(d: Desc) -> bool:
    return d.lo == 0 and d.hi == 0
