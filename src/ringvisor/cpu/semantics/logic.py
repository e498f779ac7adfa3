"""Logical, bit and byte instructions (SDM vol. 1 7.3.3-7.3.5, 7.3.9-7.3.13):
NOT is in arith; here bit test (BT BTS BTR BTC), bit scan (BSF BSR), SETcc,
CMOVcc, BSWAP, flag control (CLC STC CMC CLD STD, LAHF SAHF) and SALC."""
from __future__ import annotations

from ringvisor.cpu.core import CF, DF, ZF
from ringvisor.cpu.flags import MASK, cond
from ringvisor.cpu.isa.operands import get_for_update as RMW
from ringvisor.cpu.semantics.registry import register, sem


def _bitop(kind):
    def fn(cpu, ins):
        w = ins.w
        bits = 8 * w
        off = ins.g1(cpu, ins)
        if ins.mem and ins.row.operands[1].kind == "G":
            # Register bit offset addresses a bit string: signed, any length.
            if off & (1 << (bits - 1)):
                off -= 1 << bits
            amask = 0xFFFF if ins.asz == 2 else 0xFFFFFFFF
            a = (ins.eaf(cpu, ins) + (off >> (3 + (w >> 1))) * w) & amask
            v = cpu.rd(ins.seg, a, w)
            if kind != "BT":
                cpu.check_wr(ins.seg, a, w)   # a write fault before CF changes
            b = off & (bits - 1)
        else:
            v = ins.g0(cpu, ins) if kind == "BT" else RMW(cpu, ins)
            b = off & (bits - 1)
            a = cpu.ea
        bit = (v >> b) & 1
        cpu.flags = (cpu.flags & ~CF) | bit
        if kind == "BT":
            return
        if kind == "BTS":
            v |= 1 << b
        elif kind == "BTR":
            v &= ~(1 << b)
        else:
            v ^= 1 << b
        if ins.mem:
            cpu.wr(ins.seg, a, w, v & MASK[w])
        else:
            ins.wb0(cpu, ins, v & MASK[w])
    return fn


for _k in ("BT", "BTS", "BTR", "BTC"):
    register(_k, _bitop(_k))


@sem("BSF")
def bsf(cpu, ins):
    v = ins.g1(cpu, ins)
    if v == 0:
        cpu.flags |= ZF            # destination unchanged (as on Intel silicon)
        return
    cpu.flags &= ~ZF
    ins.s0(cpu, ins, (v & -v).bit_length() - 1)


@sem("BSR")
def bsr(cpu, ins):
    v = ins.g1(cpu, ins)
    if v == 0:
        cpu.flags |= ZF
        return
    cpu.flags &= ~ZF
    ins.s0(cpu, ins, v.bit_length() - 1)


@sem("SETcc")
def setcc(cpu, ins):
    ins.s0(cpu, ins, 1 if cond(cpu.flags, ins.row.cc) else 0)


@sem("CMOVcc")
def cmovcc(cpu, ins):
    v = ins.g1(cpu, ins)           # the source is read (and may fault) either way
    if cond(cpu.flags, ins.row.cc):
        ins.s0(cpu, ins, v)
    elif ins.osz == 4:
        pass                        # 32-bit form: destination unchanged (no zero-extension in IA-32)


@sem("BSWAP")
def bswap(cpu, ins):
    v = ins.g0(cpu, ins)
    ins.s0(cpu, ins, int.from_bytes(v.to_bytes(4, "little"), "big"))


@sem("CLC")
def clc(cpu, ins):
    cpu.flags &= ~CF


@sem("STC")
def stc(cpu, ins):
    cpu.flags |= CF


@sem("CMC")
def cmc(cpu, ins):
    cpu.flags ^= CF


@sem("CLD")
def cld(cpu, ins):
    cpu.flags &= ~DF


@sem("STD")
def std(cpu, ins):
    cpu.flags |= DF


@sem("LAHF")
def lahf(cpu, ins):
    r = cpu.r
    r[0] = (r[0] & 0xFFFF00FF) | ((cpu.flags & 0xD5) | 2) << 8


@sem("SAHF")
def sahf(cpu, ins):
    cpu.flags = (cpu.flags & ~0xD5) | ((cpu.r[0] >> 8) & 0xD5)


@sem("SALC")
def salc(cpu, ins):
    r = cpu.r
    r[0] = (r[0] & 0xFFFFFF00) | (0xFF if cpu.flags & CF else 0)
