"""Exact x87 arithmetic on register images: add, multiply, divide, square root.

Each operation takes register images and the control word and returns
(raw, flags, c1): the result, the exception flags it raised (IE DE ZE OE UE PE
bits) and the round-up indication for C1. When an unmasked pre-computation
exception (#IA, #D, #Z) occurs the result is None: the destination keeps its
value (SDM vol. 1 8.5). Special operands follow SDM vol. 1 tables 4-7, 8-10 and
the instruction pages; two NaNs give the one with the larger significand.
"""
from __future__ import annotations

from math import isqrt

from ringvisor.cpu.x87 import float80 as f80
from ringvisor.cpu.x87.rounding import to_register
from ringvisor.cpu.x87.state import DE, IE, ZE, RC_DOWN

ZERO, NORMAL, DENORMAL, INF, QNAN, SNAN, UNSUPPORTED = range(7)
_classify = f80.classify
_EXACT_BITS = 130            # far-apart addends: keep this many bits, then sticky


def propagate_nan(a: int, ca: int, b: int, cb: int):
    """(raw, flags) for two operands at least one of which is a NaN (SDM vol. 1
    table 4-7): a QNaN beats an SNaN; two of a kind, the larger significand."""
    flags = IE if ca == SNAN or cb == SNAN else 0
    a_nan = ca == QNAN or ca == SNAN
    b_nan = cb == QNAN or cb == SNAN
    if a_nan and b_nan and ca != cb:            # an SNaN and a QNaN: the QNaN
        return (a if ca == QNAN else b), flags
    if a_nan and b_nan:
        sa, sb = a & f80.SIG_MASK | f80.QUIET_BIT, b & f80.SIG_MASK | f80.QUIET_BIT
        if sa != sb:
            winner = a if sa > sb else b
        else:
            winner = a if a >> 79 <= b >> 79 else b       # same: the positive one
        return winner | f80.QUIET_BIT, flags
    return (a if a_nan else b) | f80.QUIET_BIT, flags


def invalid_operands(a: int, ca: int, b: int, cb: int):
    """(raw, flags) when an operand is a NaN or unsupported, else None."""
    if ca == UNSUPPORTED or cb == UNSUPPORTED:
        return f80.INDEFINITE, IE
    if ca >= QNAN or cb >= QNAN:
        return propagate_nan(a, ca, b, cb)
    return None


def _gate(result, flags, cw):
    """Drop the result when a pre-computation exception is unmasked."""
    if flags & ~cw & (IE | DE | ZE):
        return None, flags, False
    return result, flags, False


def _normalized(raw: int):
    sig, e2 = f80.exact(raw)
    shift = 64 - sig.bit_length()
    return sig << shift, e2 - shift


def add(a: int, b: int, cw: int, negate_b: bool = False):
    """a + b, or a - b: a NaN keeps its sign (the negation is of numbers)."""
    ca, cb = _classify(a), _classify(b)
    bad = invalid_operands(a, ca, b, cb)
    if bad:
        return _gate(bad[0], bad[1], cw)
    if negate_b:
        b ^= f80.SIGN
    de = DE if ca == DENORMAL or cb == DENORMAL else 0
    if de and not cw & DE:
        return None, de, False
    if ca == INF or cb == INF:
        if ca == INF and cb == INF and (a ^ b) >> 79:
            return _gate(f80.INDEFINITE, IE, cw)
        return (a if ca == INF else b), de, False
    na, nb = a >> 79, b >> 79
    if ca == ZERO and cb == ZERO:
        if na == nb:
            return a, de, False
        return f80.zero(((cw >> 10) & 3) == RC_DOWN), de, False
    if ca == ZERO:
        return _exact_or_round(b, cw, de)
    if cb == ZERO:
        return _exact_or_round(a, cw, de)
    ma, ea = f80.exact(a)
    mb, eb = f80.exact(b)
    if ea < eb:
        ma, ea, na, mb, eb, nb = mb, eb, nb, ma, ea, na
    diff = ea - eb
    sticky = False
    if diff > _EXACT_BITS:                  # b only matters as a sticky bit
        ma <<= _EXACT_BITS
        ea -= _EXACT_BITS
        mb, sticky = (0, True) if na == nb else (1, True)
        total = ma + mb if na == nb else ma - mb
        return _finish(na, total, ea, sticky, cw, de)
    ma <<= diff
    total = ma + mb if na == nb else ma - mb
    if total == 0:
        return f80.zero(((cw >> 10) & 3) == RC_DOWN), de, False
    neg = na
    if total < 0:
        neg, total = nb, -total
    return _finish(neg, total, eb, False, cw, de)


def _finish(neg, mag, e2, sticky, cw, de):
    raw, flags, c1 = to_register(neg, mag, e2, sticky, cw)
    return raw, flags | de, c1


def _exact_or_round(raw: int, cw: int, de: int):
    """x + 0: the nonzero operand rounded to the precision control."""
    mag, e2 = f80.exact(raw)
    return _finish(raw >> 79, mag, e2, False, cw, de)


def mul(a: int, b: int, cw: int):
    ca, cb = _classify(a), _classify(b)
    bad = invalid_operands(a, ca, b, cb)
    if bad:
        return _gate(bad[0], bad[1], cw)
    neg = (a ^ b) >> 79
    if (ca == INF and cb == ZERO) or (ca == ZERO and cb == INF):
        return _gate(f80.INDEFINITE, IE, cw)
    de = DE if ca == DENORMAL or cb == DENORMAL else 0
    if de and not cw & DE:
        return None, de, False
    if ca == INF or cb == INF:
        return f80.infinity(neg), de, False
    if ca == ZERO or cb == ZERO:
        return f80.zero(neg), de, False
    ma, ea = f80.exact(a)
    mb, eb = f80.exact(b)
    return _finish(neg, ma * mb, ea + eb, False, cw, de)


def div(a: int, b: int, cw: int):
    """a / b."""
    ca, cb = _classify(a), _classify(b)
    bad = invalid_operands(a, ca, b, cb)
    if bad:
        return _gate(bad[0], bad[1], cw)
    neg = (a ^ b) >> 79
    if (ca == INF and cb == INF) or (ca == ZERO and cb == ZERO):
        return _gate(f80.INDEFINITE, IE, cw)
    if cb == ZERO and ca != INF:        # #Z, and no #D for a denormal dividend (silicon)
        return _gate(f80.infinity(neg), ZE, cw)
    de = DE if ca == DENORMAL or cb == DENORMAL else 0
    if de and not cw & DE:
        return None, de, False
    if ca == INF:
        return f80.infinity(neg), de, False
    if cb == INF or ca == ZERO:
        return f80.zero(neg), de, False
    ma, ea = _normalized(a)
    mb, eb = _normalized(b)
    q, r = divmod(ma << 66, mb)
    return _finish(neg, q, ea - eb - 66, r != 0, cw, de)


def sqrt(a: int, cw: int):
    ca = _classify(a)
    if ca == UNSUPPORTED:
        return _gate(f80.INDEFINITE, IE, cw)
    if ca >= QNAN:
        return _gate(a | f80.QUIET_BIT, IE if ca == SNAN else 0, cw)
    if ca == ZERO:
        return a, 0, False
    if a >> 79:
        return _gate(f80.INDEFINITE, IE, cw)
    de = DE if ca == DENORMAL else 0
    if de and not cw & DE:
        return None, de, False
    if ca == INF:
        return a, de, False
    m, e2 = _normalized(a)
    if e2 & 1:
        m <<= 1
        e2 -= 1
    m <<= 132                                   # 66+ bits of root
    root = isqrt(m)
    return _finish(0, root, (e2 - 132) >> 1, root * root != m, cw, de)

