"""Byte-level x86 encoding for the generators: prefixes, ModRM/SIB with the
memory forms that reach the test's data area or stack, immediates, and
the register-loading MOVs the generators put in front of instructions whose
operands must be known (shift counts in CL, string pointers, divisors)."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ringvisor.difftest.effects import NONE
from ringvisor.difftest.program import Insn
from ringvisor.difftest.world import DATA

OSIZE, ASIZE, LOCK, REP, REPNE = b"\x66", b"\x67", b"\xf0", b"\xf3", b"\xf2"
SEGMENT_PREFIXES = (b"", b"\x26", b"\x2e", b"\x36", b"\x3e", b"\x64", b"\x65")
EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI = range(8)
WRITABLE = (EAX, ECX, EDX, EBX, EBP, ESI, EDI)     # registers a test may overwrite


def imm(value: int, size: int) -> bytes:
    return (value & ((1 << 8 * size) - 1)).to_bytes(size, "little")


def osize(width: int) -> bytes:
    return OSIZE if width == 2 else b""


@dataclass(frozen=True)
class Mem:
    """A memory operand: its ModRM/SIB/displacement for a given reg field,
    plus the prefixes it needs (address size, segment override)."""
    form: str                 # "abs32", "sib32", "esp8", "abs16"
    disp: int
    scale: int = 0
    segment: bytes = b""

    def prefixes(self) -> bytes:
        return self.segment + (ASIZE if self.form == "abs16" else b"")

    def modrm(self, reg: int) -> bytes:
        r = (reg & 7) << 3
        if self.form == "abs32":
            return bytes((0x05 | r,)) + struct.pack("<I", self.disp)
        if self.form == "sib32":          # no base, no index: [disp32] through a SIB
            return bytes((0x04 | r, self.scale << 6 | 0x25)) + struct.pack("<I", self.disp)
        if self.form == "esp8":
            return bytes((0x44 | r, self.scale << 6 | 0x24, self.disp & 0xFF))
        return bytes((0x06 | r,)) + struct.pack("<H", self.disp)      # abs16

    @property
    def writes_code_segment(self) -> bool:
        return self.segment == b"\x2e"


def data_mem(offset: int, form: str = "abs32", scale: int = 0, segment: bytes = b"") -> Mem:
    return Mem(form, DATA + offset, scale, segment)


@dataclass(frozen=True)
class Reg:
    n: int

    def prefixes(self) -> bytes:
        return b""

    def modrm(self, reg: int) -> bytes:
        return bytes((0xC0 | (reg & 7) << 3 | self.n,))


def modrm_insn(opcode: bytes, reg: int, rm, mnemonic: str, effect=NONE, width: int = 4,
               immediate: bytes = b"", lock: bool = False, ring0: bool = False,
               extra_prefix: bytes = b"") -> Insn:
    """prefixes + opcode + ModRM(+SIB+disp) + immediate."""
    code = (LOCK if lock else b"") + extra_prefix + rm.prefixes() + osize(width) + opcode + \
        rm.modrm(reg) + immediate
    return Insn(code, mnemonic, effect, ring0)


def mov_imm(reg: int, value: int, width: int = 4) -> Insn:
    """MOV r, imm (B0+r / B8+r): sets a register, touches no flag."""
    if width == 1:
        return Insn(bytes((0xB0 + reg,)) + imm(value, 1), "MOV")
    return Insn(osize(width) + bytes((0xB8 + reg,)) + imm(value, width), "MOV")


def plain(code: bytes, mnemonic: str, effect=NONE, ring0: bool = False) -> Insn:
    return Insn(code, mnemonic, effect, ring0)
