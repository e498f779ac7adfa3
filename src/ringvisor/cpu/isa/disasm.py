"""Disassembler for traces: bytes -> decoded instructions -> Intel syntax.

`disassemble(code, code32, address)` -> one instruction's text;
`listing(...)` -> consecutive instructions (syntax.py writes each).
"""
from __future__ import annotations

from ringvisor.cpu.isa.decoder import NeedMore, decode
from ringvisor.cpu.isa.syntax import format_instr


def disassemble(code: bytes, code32: bool = True, address: int = 0) -> str:
    try:
        ins = decode(code[:16], code32)
    except NeedMore:
        return "(truncated)"
    return format_instr(ins, address)


def listing(code: bytes, code32: bool = True, address: int = 0) -> list[tuple[int, bytes, str]]:
    """(address, bytes, text) for consecutive instructions."""
    out, off = [], 0
    while off < len(code):
        try:
            ins = decode(code[off:off + 16], code32)
        except (NeedMore, Exception):
            out.append((address + off, code[off:off + 1], "(bad)"))
            off += 1
            continue
        out.append((address + off, code[off:off + ins.length], format_instr(ins, address + off)))
        off += max(ins.length, 1)
    return out
