"""FRNDINT, FXTRACT, FSCALE, FPREM and FPREM1 (SDM vol. 2 instruction pages)."""
from __future__ import annotations

from ringvisor.cpu.x87 import float80 as f80
from ringvisor.cpu.x87.arith import invalid_operands
from ringvisor.cpu.x87.ops import record, stack_overflow, stack_underflow, write_result
from ringvisor.cpu.x87.rounding import round_at, to_register
from ringvisor.cpu.x87.state import C0, C1, C2, C3, DE, IE, PE, ZE

ZERO, NORMAL, DENORMAL, INF, QNAN, SNAN, UNSUPPORTED = range(7)
_classify = f80.classify
CW_EXTENDED = 0x0300            # PC = 64 bits: exact results go through as they are


def _single_invalid(raw, cls):
    if cls == UNSUPPORTED:
        return f80.INDEFINITE, IE
    if cls == SNAN:
        return raw | f80.QUIET_BIT, IE
    if cls == QNAN:
        return raw, 0
    return None


def frndint(raw: int, cw: int):
    cls = _classify(raw)
    bad = _single_invalid(raw, cls)
    if bad:
        return (None if bad[1] & ~cw & IE else bad[0]), bad[1], False
    if cls in (ZERO, INF):
        return raw, 0, False
    de = DE if cls == DENORMAL else 0
    if de and not cw & DE:
        return None, de, False
    mag, e2 = f80.exact(raw)
    neg = raw >> 79
    value, inexact, up = round_at(neg, mag, e2, False, 0, (cw >> 10) & 3)
    result = f80.pack(neg, value, 0) if value else neg << 79
    return result, de | (PE if inexact else 0), up


def _normalized(raw):
    sig, e2 = f80.exact(raw)
    shift = 64 - sig.bit_length()
    return sig << shift, e2 - shift


def fxtract(fpu, arg, mem, ctx):
    """ST(0) = exponent, then push the significand (with ST(0)'s sign)."""
    if fpu.is_empty(0):
        if stack_underflow(fpu):
            fpu.set_st(0, f80.INDEFINITE)
            fpu.push(f80.INDEFINITE)
        return 0
    if fpu.valid >> ((fpu.top - 1) & 7) & 1:
        if stack_overflow(fpu):
            fpu.set_st(0, f80.INDEFINITE)
            fpu.push(f80.INDEFINITE)
        return 0
    raw = fpu.st(0)
    cls = _classify(raw)
    neg = raw >> 79
    bad = _single_invalid(raw, cls)
    if bad:
        exponent = significand = bad[0]
        flags = bad[1]
    elif cls == ZERO:
        exponent, significand, flags = f80.infinity(1), raw, ZE
    elif cls == INF:
        exponent, significand, flags = f80.POS_INF, raw, 0
    else:
        flags = DE if cls == DENORMAL else 0
        sig, e2 = _normalized(raw)
        e = e2 + 63
        exponent = f80.pack(int(e < 0), abs(e), 0) if e else 0
        significand = neg << 79 | f80.BIAS << 64 | sig
    if record(fpu, flags, False):
        fpu.set_st(0, exponent)
        fpu.push(significand)
    return 0


def fscale(fpu, arg, mem, ctx):
    """ST(0) = ST(0) * 2**trunc(ST(1))."""
    if fpu.is_empty(0) or fpu.is_empty(1):
        if stack_underflow(fpu):
            fpu.set_st(0, f80.INDEFINITE)
        return 0
    a, b = fpu.st(0), fpu.st(1)
    ca, cb = _classify(a), _classify(b)
    bad = invalid_operands(a, ca, b, cb)
    if bad:
        write_result(fpu, 0, bad[0], bad[1], False)
        return 0
    de = DE if ca == DENORMAL or cb == DENORMAL else 0
    if de and not fpu.cw & DE:
        record(fpu, de, False)
        return 0
    neg = a >> 79
    if cb == INF:
        if (ca == ZERO and not b >> 79) or (ca == INF and b >> 79):
            write_result(fpu, 0, f80.INDEFINITE, IE, False)
        elif ca in (ZERO, INF):
            write_result(fpu, 0, a, de, False)
        else:
            write_result(fpu, 0, f80.zero(neg) if b >> 79 else f80.infinity(neg), de, False)
        return 0
    if ca in (ZERO, INF):
        write_result(fpu, 0, a, de, False)
        return 0
    if cb == ZERO:
        n = 0
    else:
        mag, e2 = f80.exact(b)
        n, _, _ = round_at(0, mag, e2, False, 0, 3)     # truncate towards zero
        n = min(n, 1 << 20)
        if b >> 79:
            n = -n
    mag, e2 = f80.exact(a)
    # Precision control does not apply to FSCALE (SDM vol. 1 8.1.5.2).
    raw, flags, c1 = to_register(neg, mag, e2 + n, False, fpu.cw | CW_EXTENDED)
    write_result(fpu, 0, raw, flags | de, c1)
    return 0


def fprem(fpu, nearest, mem, ctx):
    """Partial remainder: FPREM (truncated quotient, nearest=False) or FPREM1
    (quotient rounded to nearest even). C2 = 1 while incomplete; C0 C3 C1 hold
    the quotient's three low bits when complete."""
    if fpu.is_empty(0) or fpu.is_empty(1):
        if stack_underflow(fpu):
            fpu.set_st(0, f80.INDEFINITE)
        fpu.sw &= ~C2
        return 0
    a, b = fpu.st(0), fpu.st(1)
    ca, cb = _classify(a), _classify(b)
    bad = invalid_operands(a, ca, b, cb)
    if not bad and (ca == INF or cb == ZERO):
        bad = f80.INDEFINITE, IE
    if bad:
        if record(fpu, bad[1], False):
            fpu.set_st(0, bad[0])
        fpu.sw &= ~C2
        return 0
    de = DE if ca == DENORMAL or cb == DENORMAL else 0
    if de and not fpu.cw & DE:
        record(fpu, de, False)
        fpu.sw &= ~C2
        return 0
    codes, flags = 0, de
    if ca == ZERO:
        result = a
    elif cb == INF:                     # ST(0) unchanged, but normalised (silicon)
        mag, e2 = f80.exact(a)
        result, more = _exact_result(a >> 79, mag, e2, fpu.cw)
        flags |= more
    else:
        ma, ea = _normalized(a)
        mb, eb = _normalized(b)
        diff = ea - eb
        neg = a >> 79
        if diff < 64:
            if diff >= 0:
                num, den = ma << diff, mb
            else:
                num, den = ma, mb << -diff
            q, r = divmod(num, den)
            if nearest and (2 * r > den or (2 * r == den and q & 1)):
                q += 1
                r -= den
            if r < 0:
                neg ^= 1
                r = -r
            codes = (C0 if q & 4 else 0) | (C3 if q & 2 else 0) | (C1 if q & 1 else 0)
            result, more = _exact_result(neg, r, min(ea, eb), fpu.cw)
        else:
            n = 32 + (diff & 31)                        # reduce by diff - n bits
            q, r = divmod(ma << n, mb)
            result, more = _exact_result(neg, r, eb + diff - n, fpu.cw)
            codes = C2
        flags |= more
    if record(fpu, flags, False):
        fpu.set_st(0, result)
    fpu.sw = fpu.sw & ~(C0 | C1 | C2 | C3) | codes
    return 0


def _exact_result(neg, mag, e2, cw):
    """An exact remainder: (raw, flags); only underflow can occur (UE when
    unmasked, with the bias adjust), and PC does not apply."""
    if mag == 0:
        return neg << 79, 0
    raw, flags, _ = to_register(neg, mag, e2, False, cw | CW_EXTENDED)
    return raw, flags
