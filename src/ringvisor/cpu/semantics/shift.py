"""Shifts and rotates (SDM vol. 1 7.3.6-7.3.7): ROL ROR RCL RCR SHL/SAL SHR
SAR, double shifts SHLD SHRD. The count is masked to 5 bits; a zero masked
count changes no flags. OF is defined for 1-bit shifts; for longer ones we
compute it with the same formula (as Intel silicon of this era does); AF is
cleared for shifts (undefined in the SDM)."""
from __future__ import annotations

from ringvisor.cpu.core import AF, CF, OF
from ringvisor.cpu.flags import MASK, NSTATUS, SIGN, szp
from ringvisor.cpu.isa.operands import get_for_update as RMW
from ringvisor.cpu.semantics.registry import register


def _count(cpu, ins):
    return ins.g1(cpu, ins) & 0x1F


SHIFT_COMPUTE = {}


def _shift(kind):
    def fn(cpu, ins):
        c = _count(cpu, ins)
        v = RMW(cpu, ins)
        if c == 0:
            if ins.mem:
                ins.wb0(cpu, ins, v)   # the write cycle still happens (faults on read-only)
            return
        ins.wb0(cpu, ins, compute(cpu, v, c, ins.w))

    def compute(cpu, v, c, w):
        """Result of shifting `v` by a non-zero masked count `c`; sets the flags."""
        bits = 8 * w
        m = MASK[w]
        s = SIGN[w]
        f = cpu.flags
        if kind in ("SHL", "SAL"):
            res = (v << c) & m
            cf = (v << c) >> bits & 1
            of = bool(res & s) != bool(cf)
            f = (f & NSTATUS) | szp(res, w)
        elif kind == "SHR":
            res = v >> c
            cf = (v >> (c - 1)) & 1
            of = bool(v & s) if c == 1 else bool(v & s)
            f = (f & NSTATUS) | szp(res, w)
        elif kind == "SAR":
            sv = v - (1 << bits) if v & s else v
            res = (sv >> c) & m
            cf = (sv >> (c - 1)) & 1 if c <= bits else (1 if v & s else 0)
            of = False
            f = (f & NSTATUS) | szp(res, w)
        elif kind == "ROL":
            t = c % bits
            res = ((v << t) | (v >> (bits - t))) & m if t else v
            cf = res & 1
            of = bool(res & s) != bool(cf)
            f &= ~(CF | OF)
        elif kind == "ROR":
            t = c % bits
            res = ((v >> t) | (v << (bits - t))) & m if t else v
            cf = 1 if res & s else 0
            of = bool(res & s) != bool(res & (s >> 1))
            f &= ~(CF | OF)
        elif kind == "RCL":
            t = c % (bits + 1)
            x = v | (f & CF) << bits
            x = ((x << t) | (x >> (bits + 1 - t))) & ((m << 1) | 1) if t else x
            res, cf = x & m, x >> bits & 1
            of = bool(res & s) != bool(cf)
            f &= ~(CF | OF)
        else:  # RCR
            t = c % (bits + 1)
            of = bool(v & s) != bool(f & CF)
            x = v | (f & CF) << bits
            x = ((x >> t) | (x << (bits + 1 - t))) & ((m << 1) | 1) if t else x
            res, cf = x & m, x >> bits & 1
            f &= ~(CF | OF)
        if cf:
            f |= CF
        if of:
            f |= OF
        cpu.flags = f
        return res
    fn.__name__ = kind.lower()
    SHIFT_COMPUTE[kind] = compute
    return fn


for _k in ("ROL", "ROR", "RCL", "RCR", "SHL", "SAL", "SHR", "SAR"):
    register(_k, _shift(_k))


def _double(left):
    def fn(cpu, ins):
        c = ins.g2(cpu, ins) & 0x1F
        d = RMW(cpu, ins)
        src = ins.g1(cpu, ins)
        if c == 0:
            if ins.mem:
                ins.wb0(cpu, ins, d)
            return
        w = ins.w
        bits = 8 * w
        m = MASK[w]
        if left:
            x = (d << bits | src) << c
            res = (x >> bits) & m
            cf = (x >> (2 * bits)) & 1
        else:
            x = (src << bits | d) >> (c - 1)
            cf = x & 1
            res = (x >> 1) & m
        f = (cpu.flags & NSTATUS) | szp(res, w)
        if cf:
            f |= CF
        if (res ^ d) & SIGN[w]:
            f |= OF
        cpu.flags = f
        ins.wb0(cpu, ins, res)
    return fn


register("SHLD", _double(True))
register("SHRD", _double(False))
_ = AF
