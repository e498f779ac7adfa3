"""Arithmetic flags (SDM vol. 1 3.4.3, appendix A of vol. 1): parity table,
result flags per width, and the condition codes (tttn encoding)."""
from __future__ import annotations

from ringvisor.cpu.core import AF, CF, OF, PF, SF, STATUS, ZF

MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}
SIGN = {1: 0x80, 2: 0x8000, 4: 0x80000000}
PARITY = bytes(PF if bin(i).count("1") % 2 == 0 else 0 for i in range(256))
NSTATUS = ~STATUS & 0xFFFFFFFF


def szp(res: int, w: int) -> int:
    """SF, ZF and PF of a (masked) result."""
    f = PARITY[res & 0xFF]
    if res == 0:
        f |= ZF
    if res & SIGN[w]:
        f |= SF
    return f


def add(cpu, a: int, b: int, c: int, w: int) -> int:
    m = MASK[w]
    r = a + b + c
    res = r & m
    f = (cpu.flags & NSTATUS) | PARITY[res & 0xFF] | ((a ^ b ^ res) & AF)
    if r > m:
        f |= CF
    if res == 0:
        f |= ZF
    s = SIGN[w]
    if res & s:
        f |= SF
    if (a ^ res) & (b ^ res) & s:
        f |= OF
    cpu.flags = f
    return res


def sub(cpu, a: int, b: int, c: int, w: int) -> int:
    m = MASK[w]
    r = a - b - c
    res = r & m
    f = (cpu.flags & NSTATUS) | PARITY[res & 0xFF] | ((a ^ b ^ res) & AF)
    if r < 0:
        f |= CF
    if res == 0:
        f |= ZF
    s = SIGN[w]
    if res & s:
        f |= SF
    if (a ^ b) & (a ^ res) & s:
        f |= OF
    cpu.flags = f
    return res


def logic(cpu, res: int, w: int) -> int:
    """AND/OR/XOR/TEST: CF = OF = 0, AF cleared (undefined in the SDM; silicon clears it)."""
    f = (cpu.flags & NSTATUS) | PARITY[res & 0xFF]
    if res == 0:
        f |= ZF
    if res & SIGN[w]:
        f |= SF
    cpu.flags = f
    return res


def cond(flags: int, cc: int) -> bool:
    """Condition `cc` (0..15: O NO B NB Z NZ BE NBE S NS P NP L NL LE NLE)."""
    k = cc >> 1
    if k == 0:
        t = flags & OF
    elif k == 1:
        t = flags & CF
    elif k == 2:
        t = flags & ZF
    elif k == 3:
        t = flags & (CF | ZF)
    elif k == 4:
        t = flags & SF
    elif k == 5:
        t = flags & PF
    elif k == 6:
        t = bool(flags & SF) != bool(flags & OF)
    else:
        t = (flags & ZF) or (bool(flags & SF) != bool(flags & OF))
    return (not t) if cc & 1 else bool(t)


# A 16-entry table of the same, indexed by cc, for the hot paths.
COND = [lambda f, c=c: cond(f, c) for c in range(16)]
