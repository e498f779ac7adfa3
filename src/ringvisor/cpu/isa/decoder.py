"""Instruction decoder driven by the opcode table (opcodes.MAPS).

`decode(code, code32)` turns bytes into an `Instr`: prefixes, the table
row, ModRM/SIB/displacement, immediates, and for each operand a getter and
a setter bound at decode time (register, memory, immediate, segment), so the
semantic functions are width-generic and the block compiler can reuse the
decoded form. Decoding never touches guest memory; an undefined or illegal
encoding decodes to an instruction whose semantics raise #UD, so that the
fault happens when (and only if) the instruction executes.
"""
from __future__ import annotations

from ringvisor.cpu.core import CS, DS, ES, SS, CpuFault, GP, UD
from ringvisor.cpu.isa import operands as O
from ringvisor.cpu.isa.opcodes import LOCK, MAPS, MODRM_ROWS, Row
from ringvisor.cpu.isa.syntax import format_instr

SEG_PREFIX = {0x26: ES, 0x2E: CS, 0x36: SS, 0x3E: DS, 0x64: 4, 0x65: 5}

# 16-bit ModRM: (base, index) registers for rm 0..7; BP-based forms use SS.
EA16 = ((3, 6), (3, 7), (5, 6), (5, 7), (6, -1), (7, -1), (5, -1), (3, -1))


class NeedMore(Exception):
    """The decoder ran past the bytes it was given."""


class Instr:
    __slots__ = ("row", "fn", "length", "osz", "asz", "seg", "rep", "lock", "mod", "reg", "rm",
                 "base", "index", "scale", "disp", "eaf", "imm", "imm2", "w", "w1",
                 "g0", "s0", "wb0", "g1", "s1", "wb1", "g2", "eip", "raw", "mem", "flags",
                 "prefixes", "ud")

    def __init__(self):
        self.seg = -1
        self.rep = 0
        self.lock = False
        self.mod = self.reg = self.rm = 0
        self.base = self.index = -1
        self.scale = 0
        self.disp = 0
        self.eaf = None
        self.imm = self.imm2 = 0
        self.w = self.w1 = 0
        self.g0 = self.s0 = self.wb0 = self.g1 = self.s1 = self.wb1 = self.g2 = None
        self.mem = False
        self.ud = False
        self.prefixes = ()

    @property
    def mnemonic(self) -> str:
        return self.row.mnemonic if self.row else "(bad)"

    def __repr__(self) -> str:
        return f"<Instr {format_instr(self)}>"


def _le(code, i: int, k: int) -> int:
    if i + k > len(code):
        raise IndexError
    return int.from_bytes(code[i:i + k], "little")


def _width(size: str, osz: int) -> int:
    if size in ("b",):
        return 1
    if size == "w":
        return 2
    if size == "d":
        return 4
    if size == "q":
        return 8
    if size == "s":
        return 6
    if size == "p":
        return osz + 2
    if size == "a":
        return 2 * osz
    return osz


def decode(code, code32: bool) -> Instr:
    """Decode one instruction from `code` (bytes-like, up to 16 bytes)."""
    ins = Instr()
    osz = asz = 4 if code32 else 2
    i = 0
    n = len(code)
    prefixes = []
    try:
        while True:
            if i >= 15:
                raise CpuFault(GP, 0)
            b = code[i]
            if b in SEG_PREFIX:
                ins.seg = SEG_PREFIX[b]
            elif b == 0x66:
                osz = 6 - osz
            elif b == 0x67:
                asz = 6 - asz
            elif b == 0xF0:
                ins.lock = True
            elif b == 0xF2 or b == 0xF3:
                ins.rep = b & 0xF
            else:
                break
            prefixes.append(b)
            i += 1
        ins.prefixes = tuple(prefixes)
        mp = 1
        if b == 0x0F:
            mp = 2
            i += 1
            b = code[i]
        i += 1
        entry = MAPS[mp][b]
        row: Row | None
        modrm = None
        if isinstance(entry, list):
            modrm = code[i]
            row = entry[(modrm >> 3) & 7]
            if modrm >= 0xC0 and (mp, b, modrm) in MODRM_ROWS:
                row = MODRM_ROWS[(mp, b, modrm)]
        else:
            row = entry
        ins.osz, ins.asz = osz, asz
        if row is None:
            ins.row = None
            ins.ud = True
            ins.length = i + (1 if modrm is not None else 0)
            return ins
        ins.row = row
        ins.flags = row.flags
        if row.modrm:
            modrm = code[i]
            i += 1
            mod, reg, rm = modrm >> 6, (modrm >> 3) & 7, modrm & 7
            ins.mod, ins.reg, ins.rm = mod, reg, rm
            if mod == 3 or row.operands[0].kind == "R" or (len(row.operands) > 1 and row.operands[1].kind == "R"):
                ins.mod = 3            # MOV CRn/DRn: the mod bits are ignored
            else:
                ins.mem = True
                if asz == 2:
                    if mod == 0 and rm == 6:
                        ins.disp = _le(code, i, 2)
                        i += 2
                        easeg = DS
                    else:
                        ins.base, ins.index = EA16[rm]
                        easeg = SS if ins.base == 5 else DS
                        if mod == 1:
                            d = code[i]
                            ins.disp = d - 256 if d & 0x80 else d
                            i += 1
                        elif mod == 2:
                            ins.disp = _le(code, i, 2)
                            i += 2
                    ins.eaf = O.ea16
                else:
                    easeg = DS
                    if rm == 4:
                        sib = code[i]
                        i += 1
                        ss_, idx, base = sib >> 6, (sib >> 3) & 7, sib & 7
                        ins.scale = ss_
                        ins.index = -1 if idx == 4 else idx
                        if base == 5 and mod == 0:
                            ins.disp = _le(code, i, 4)
                            i += 4
                        else:
                            ins.base = base
                            if base in (4, 5):
                                easeg = SS
                    elif rm == 5 and mod == 0:
                        ins.disp = _le(code, i, 4)
                        i += 4
                    else:
                        ins.base = rm
                        if rm == 5:
                            easeg = SS
                    if mod == 1:
                        d = code[i]
                        ins.disp = (d - 256 if d & 0x80 else d)
                        i += 1
                    elif mod == 2:
                        ins.disp = _le(code, i, 4)
                        i += 4
                    ins.eaf = O.ea32
                if ins.seg < 0:
                    ins.seg = easeg
        # Immediates and operand accessors, in operand order.
        ops = row.operands
        accessors = []
        nimm = 0
        for k, op in enumerate(ops):
            kind, size = op.kind, op.size
            w = _width(size, osz)
            if kind in "IJ":
                if size == "bs" or (kind == "J" and size == "b"):
                    v = code[i]
                    if v & 0x80:
                        v -= 256
                    i += 1
                    if kind == "I":
                        v &= O.MASK[w]
                elif size == "b":
                    v = code[i]
                    i += 1
                else:
                    iw = 2 if size == "w" else min(w, 4)
                    v = _le(code, i, iw)
                    i += iw
                    if kind == "J" and v >> (8 * iw - 1):
                        v -= 1 << (8 * iw)
                if nimm == 0:
                    ins.imm = v
                    accessors.append((O.get_imm, None, None, w))
                else:
                    ins.imm2 = v           # ENTER Iw,Ib
                    accessors.append((O.get_imm2, None, None, w))
                nimm += 1
            elif kind == "A":
                ow = osz
                ins.imm = _le(code, i, ow)
                ins.imm2 = _le(code, i + ow, 2)
                i += ow + 2
                accessors.append((None, None, None, w))
            elif kind == "O":
                ins.disp = _le(code, i, asz)
                i += asz
                ins.mem = True
                ins.eaf = O.ea_moffs
                if ins.seg < 0:
                    ins.seg = DS
                accessors.append(O.mem_access(w))
            elif kind in "EM":
                if ins.mod == 3:
                    if kind == "M":
                        ins.ud = True
                    accessors.append(O.reg_access(w, ins.rm))
                else:
                    accessors.append(O.mem_access(w))
            elif kind == "G":
                accessors.append(O.reg_access(w, ins.reg))
            elif kind == "R":
                accessors.append(O.reg_access(4, ins.rm))
            elif kind == "Z":
                accessors.append(O.reg_access(w, row.zreg))
            elif kind == "reg":
                accessors.append(O.reg_access(w if size == "v" else _width(size, osz), op.reg))
            elif kind == "seg":
                accessors.append(O.seg_access(op.reg))
            elif kind == "S":
                if ins.reg > 5:
                    ins.ud = True
                accessors.append(O.seg_access(ins.reg if ins.reg < 6 else 0))
            elif kind == "const":
                accessors.append((O.get_one, None, None, 1))
            else:                      # C D X Y: handled by the semantics
                accessors.append((None, None, None, w))
        if accessors:
            ins.g0, ins.s0, ins.wb0, ins.w = accessors[0]
        if len(accessors) > 1:
            ins.g1, ins.s1, ins.wb1, ins.w1 = accessors[1]
        if len(accessors) > 2:
            ins.g2 = accessors[2][0]
        if ins.lock and (not row.flags & LOCK or not ins.mem):
            ins.ud = True
        if i > 15:
            raise CpuFault(GP, 0)
        if i > n:
            raise IndexError
        ins.length = i
        return ins
    except IndexError:
        if n >= 15:
            raise CpuFault(GP, 0) from None
        raise NeedMore() from None


def raise_ud(cpu, ins):
    raise CpuFault(UD)
