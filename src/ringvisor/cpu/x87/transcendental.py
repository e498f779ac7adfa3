"""The transcendental instructions: F2XM1, FYL2X, FYL2XP1, FPTAN, FPATAN,
FSIN, FCOS, FSINCOS (SDM vol. 2 pages and vol. 1 8.3.9-8.3.10).

Results are computed to about 400 bits with `decimal` and rounded once to 64
bits under RC (precision control does not apply to them, vol. 1 8.1.5.2): the
correctly rounded value. Silicon is within an ulp of it, not always equal; the
difftest measures how often they differ (cpu/README.md). The trigonometric
instructions reduce their argument by the x87's own 66-bit pi (SDM vol. 1
8.3.10; silicon matches this and not the true pi), so for large arguments they
give the functions of x mod (pi66 / 2), as hardware does.
"""
from __future__ import annotations

from decimal import Context, Decimal, localcontext

from ringvisor.cpu.x87 import float80 as f80
from ringvisor.cpu.x87.arith import invalid_operands
from ringvisor.cpu.x87.ops import record, stack_overflow, stack_underflow, write_result
from ringvisor.cpu.x87.rounding import to_register
from ringvisor.cpu.x87.state import C1, C2, DE, IE, PE, ZE

ZERO, NORMAL, DENORMAL, INF, QNAN, SNAN, UNSUPPORTED = range(7)
_classify = f80.classify
DIGITS = 130                    # working precision (about 430 bits)
RESULT_BITS = 160
CW_EXTENDED = 0x0300
TRIG_LIMIT_EXP = f80.BIAS + 63  # |x| >= 2**63: out of range, C2 = 1


def _ctx(extra=0):
    return Context(prec=DIGITS + extra, Emax=10 ** 6, Emin=-10 ** 6)


def to_decimal(raw: int) -> Decimal:
    sig, e2 = f80.exact(raw)
    value = Decimal(sig) * (Decimal(2) ** e2) if e2 < 0 else Decimal(sig << e2)
    return -value if raw >> 79 else value


def _round_decimal(value: Decimal, cw: int, tail: int = 1):
    """A nonzero irrational value, rounded to a register under RC at 64 bits.
    When the working precision cannot see the function's difference from a
    simple value (sin x = x, cos x = 1 for tiny x), `tail` says on which side
    of the computed value the true magnitude lies (-1: below, +1: above)."""
    neg = int(value < 0)
    value = abs(value)
    # |value| = mag * 2**e2 with mag of RESULT_BITS bits; the tail is sticky.
    e = _log2_floor(value)
    e2 = e - RESULT_BITS + 1
    scaled = value * (Decimal(2) ** -e2)
    mag = int(scaled)
    if mag == scaled and tail < 0:
        mag -= 1
    return to_register(neg, mag, e2, True, cw | CW_EXTENDED)


def _log2_floor(value: Decimal) -> int:
    guess = int((value.adjusted()) * 3.321928094887362)
    while Decimal(2) ** guess > value:
        guess -= 1
    while Decimal(2) ** (guess + 1) <= value:
        guess += 1
    return guess


# -- series on Decimal (the context's precision)
def _expm1(x: Decimal) -> Decimal:
    if abs(x) > 1:                          # no cancellation: exp itself
        return x.exp() - 1
    total, term, k = Decimal(0), x, 1
    while term:
        total += term
        k += 1
        term = term * x / k
        if abs(term) < abs(total) * Decimal(10) ** -(DIGITS + 5):
            break
    return total


def _atanh(t: Decimal) -> Decimal:
    total, power, k, t2 = Decimal(0), t, 1, t * t
    while power:
        term = power / k
        total += term
        if abs(term) < abs(total) * Decimal(10) ** -(DIGITS + 5):
            break
        power *= t2
        k += 2
    return total


def _ln(x: Decimal) -> Decimal:
    """ln(x) with full relative precision near 1."""
    if Decimal("0.5") <= x <= 2:
        return 2 * _atanh((x - 1) / (x + 1))
    e = _log2_floor(x)
    return e * _LN2 + 2 * _atanh((x / (Decimal(2) ** e) - 1) / (x / (Decimal(2) ** e) + 1))


def _sin_cos_series(r: Decimal):
    r2 = r * r
    sin, term, k = Decimal(0), r, 1
    while term:
        sin += term
        term = -term * r2 / ((k + 1) * (k + 2))
        k += 2
        if abs(term) < Decimal(10) ** -(DIGITS + 40):
            break
    cos, term, k = Decimal(0), Decimal(1), 0
    while term:
        cos += term
        term = -term * r2 / ((k + 1) * (k + 2))
        k += 2
        if abs(term) < Decimal(10) ** -(DIGITS + 40):
            break
    return sin, cos


def _sin_cos(x: Decimal):
    """sin and cos of x (|x| < 2**63), reduced modulo the x87's pi66 / 2."""
    with localcontext(_ctx(40)):
        q = (x / _HALF_PI66).to_integral_value(rounding="ROUND_HALF_EVEN")
        r = x - q * _HALF_PI66
        s, c = _sin_cos_series(r)
        quadrant = int(q) & 3
    return [(s, c), (c, -s), (-s, -c), (-c, s)][quadrant]


def _atan(z: Decimal) -> Decimal:
    """atan(z) for any z."""
    if z < 0:
        return -_atan(-z)
    if z > 1:
        return _HALF_PI - _atan(1 / z)
    for _ in range(3):                      # halve the angle three times
        z = z / (1 + (1 + z * z).sqrt())
    total, power, k, z2 = Decimal(0), z, 1, z * z
    while power:
        term = power / k
        total += term if (k // 2) % 2 == 0 else -term
        if abs(term) < abs(total) * Decimal(10) ** -(DIGITS + 5) or not total:
            break
        power *= z2
        k += 2
    return 8 * total


def _pi() -> Decimal:
    with localcontext(_ctx(60)):
        def atan_inv(n):
            total, term, k, sign = Decimal(0), Decimal(1) / n, 1, 1
            while term > Decimal(10) ** -(DIGITS + 60):
                total += sign * term / k
                term /= n * n
                k += 2
                sign = -sign
            return total
        return 16 * atan_inv(5) - 4 * atan_inv(239)


with localcontext(_ctx(60)):
    _PI = _pi()
    _HALF_PI = _PI / 2
    _LN2 = 2 * _atanh(Decimal(1) / 3)
    # The x87's pi for argument reduction: pi truncated to 66 bits.
    _HALF_PI66 = Decimal(0xC90FDAA22168C234C) / (Decimal(2) ** 67)


# -- instructions
def f2xm1(raw: int, cw: int):
    """ST(0) = 2**ST(0) - 1 (defined for -1 <= ST(0) <= +1)."""
    cls = _classify(raw)
    if cls == UNSUPPORTED:
        return (None if not cw & IE else f80.INDEFINITE), IE, False
    if cls in (QNAN, SNAN):
        flags = IE if cls == SNAN else 0
        return (None if flags & ~cw else raw | f80.QUIET_BIT), flags, False
    if cls == ZERO:
        return raw, 0, False
    if cls == INF:
        return (f80.ONE | f80.SIGN if raw >> 79 else raw), 0, False
    de = DE if cls == DENORMAL else 0
    if de and not cw & DE:
        return None, de, False
    # x = +-1: silicon rounds 2**1 - 1 as if just below 1, and gives -0.5 for
    # 2**-1 - 1 with PE set and C1 clear under every RC.
    if raw == f80.ONE:
        with localcontext(_ctx()):
            return _round_decimal(Decimal(1), cw, -1)
    if raw == f80.ONE | f80.SIGN:
        return f80.SIGN | (f80.BIAS - 1) << 64 | f80.INT_BIT, PE, False
    x = to_decimal(raw)
    if abs(x) > 1:
        # Outside -1..+1 the SDM leaves the result undefined; give the
        # function's value where it is finite in range, as a mature user expects.
        if x > 16384:                       # 2**x overflows any format
            return to_register(0, 1, 16384, False, cw | CW_EXTENDED)
        if x < -80:
            return _round_decimal(Decimal(-1), cw, 1)
    with localcontext(_ctx()):
        result, flags, c1 = _round_decimal(_expm1(x * _LN2), cw)
    return result, flags | de, c1


def fyl2x(fpu, plus_one, mem, ctx):
    """FYL2X: ST(1) = ST(1) * log2(ST(0)); FYL2XP1: ST(1) * log2(ST(0) + 1). Pops."""
    if fpu.is_empty(0) or fpu.is_empty(1):
        if stack_underflow(fpu):
            fpu.set_st(1, f80.INDEFINITE)
            fpu.pop()
        return 0
    x, y = fpu.st(0), fpu.st(1)
    cx, cy = _classify(x), _classify(y)
    bad = invalid_operands(y, cy, x, cx)
    if bad:
        write_result(fpu, 1, bad[0], bad[1], False, 1)
        return 0
    de = DE if cx == DENORMAL or cy == DENORMAL else 0
    result, flags, c1 = _yl2x(x, cx, y, cy, plus_one, fpu.cw)
    if flags & (IE | ZE):               # log2(0): #Z without #D, as x/0 (silicon)
        de = 0
    elif de and not fpu.cw & DE:
        record(fpu, de, False)
        return 0
    write_result(fpu, 1, result, flags | de, c1, 1)
    return 0


def _yl2x(x, cx, y, cy, plus_one, cw):
    xneg, yneg = x >> 79, y >> 79
    if plus_one:
        # log2(1 + x): x = -0..+0 gives +-0 with y's sign product
        if cx == ZERO:
            if cy == INF:
                return f80.INDEFINITE, IE, False
            return f80.zero(xneg ^ yneg), 0, False
        if cx == INF:
            if xneg:
                return f80.INDEFINITE, IE, False
            if cy == ZERO:
                return f80.INDEFINITE, IE, False
            return f80.infinity(yneg), 0, False
        with localcontext(_ctx()):
            xv = to_decimal(x)
            if xv <= -1:
                return f80.INDEFINITE, IE, False
            if cy == INF:
                return f80.infinity(yneg ^ int(xv < 0)), 0, False
            if cy == ZERO:
                return f80.zero(yneg ^ int(xv < 0)), 0, False
            if abs(xv) <= Decimal("0.5"):
                log = 2 * _atanh(xv / (2 + xv)) / _LN2
            else:                           # outside the documented domain
                log = (1 + xv).ln() / _LN2
            return _round_decimal(log * to_decimal(y), cw)
    # log2(x)
    if xneg and cx != ZERO:
        return f80.INDEFINITE, IE, False
    if cx == ZERO:
        if cy == ZERO:
            return f80.INDEFINITE, IE, False
        if cy == INF:
            return f80.infinity(yneg ^ 1), 0, False
        return f80.infinity(yneg ^ 1), ZE, False
    if cx == INF:
        if cy == ZERO:
            return f80.INDEFINITE, IE, False
        return f80.infinity(yneg), 0, False
    sig, e2 = f80.exact(x)
    power_of_two = sig & (sig - 1) == 0
    if cy == INF:
        if power_of_two and e2 + sig.bit_length() - 1 == 0:
            return f80.INDEFINITE, IE, False        # inf * log2(1)
        below_one = e2 + sig.bit_length() - 1 < 0
        return f80.infinity(yneg ^ int(below_one)), 0, False
    if cy == ZERO:
        below_one = e2 + sig.bit_length() - 1 < 0
        return f80.zero(yneg ^ int(below_one)), 0, False
    if power_of_two:                         # log2 is the integer k: y * k exactly
        k = e2 + sig.bit_length() - 1
        if k == 0:
            return f80.zero(yneg), 0, False
        ys, ye = f80.exact(y)
        raw, flags, c1 = to_register(yneg ^ int(k < 0), ys * abs(k), ye, False, cw | CW_EXTENDED)
        return raw, flags | PE, c1          # silicon reports PE even when exact
    with localcontext(_ctx()):
        return _round_decimal(_ln(to_decimal(x)) / _LN2 * to_decimal(y), cw)


def _trig_operand(fpu):
    """(raw, cls) of ST(0) for FSIN/FCOS/FSINCOS/FPTAN, or None when handled:
    an empty ST(0) or an out-of-range one (C2 = 1, ST(0) unchanged)."""
    if fpu.is_empty(0):
        return None
    raw = fpu.st(0)
    cls = _classify(raw)
    if cls in (NORMAL, DENORMAL) and (raw >> 64) & f80.EXP_MAX >= TRIG_LIMIT_EXP:
        return "range"
    return raw, cls


def _trig_invalid(raw, cls, cw):
    """(raw, flags) for NaN, unsupported and infinite operands, else None."""
    if cls == UNSUPPORTED or cls == INF:
        return f80.INDEFINITE, IE
    if cls == SNAN:
        return raw | f80.QUIET_BIT, IE
    if cls == QNAN:
        return raw, 0
    return None


def fsin_fcos(fpu, which, mem, ctx):
    got = _trig_operand(fpu)
    if got is None:
        fpu.sw &= ~C2
        if stack_underflow(fpu):
            fpu.set_st(0, f80.INDEFINITE)
        return 0
    if got == "range":
        fpu.sw = fpu.sw & ~C1 | C2
        return 0
    fpu.sw &= ~C2
    raw, cls = got
    result, flags, c1 = _sin_or_cos(raw, cls, which, fpu.cw)
    write_result(fpu, 0, result, flags, c1)
    return 0


TINY_EXP = f80.BIAS - 100        # below 2**-100: sin x, tan x, atan x are x to 200 bits


def near_identity(raw: int, tail: int, cw: int):
    """Round f(x) for a tiny x where f(x) = x (1 + O(x**2)): the magnitude lies
    just below (tail -1: sin, atan) or above (+1: tan) |x|."""
    sig, e2 = f80.exact(raw)
    mag = (sig << 80) - 1 if tail < 0 else sig << 80
    return to_register(raw >> 79, mag, e2 - 80, True, cw | CW_EXTENDED)


def _sin_or_cos(raw, cls, which, cw):
    bad = _trig_invalid(raw, cls, cw)
    if bad:
        return (None if bad[1] & ~cw & IE else bad[0]), bad[1], False
    if cls == ZERO:
        return (raw if which == "sin" else f80.ONE), 0, False
    de = DE if cls == DENORMAL else 0
    if de and not cw & DE:
        return None, de, False
    if which == "sin" and (raw >> 64) & f80.EXP_MAX < TINY_EXP:
        result, flags, c1 = near_identity(raw, -1, cw)
        return result, flags | de, c1
    with localcontext(_ctx()):
        s, c = _sin_cos(to_decimal(raw))
        result, flags, c1 = _round_decimal(s if which == "sin" else c, cw, -1)
    return result, flags | de, c1


def fsincos(fpu, arg, mem, ctx):
    """ST(0) = sin, then push cos (ST(1) = sin, ST(0) = cos)."""
    return _two_results(fpu, "sincos")


def fptan(fpu, arg, mem, ctx):
    """ST(0) = tan, then push 1.0."""
    return _two_results(fpu, "tan")


def _two_results(fpu, which):
    got = _trig_operand(fpu)
    if got is None:
        fpu.sw &= ~C2
        if stack_underflow(fpu):
            fpu.set_st(0, f80.INDEFINITE)
            fpu.push(f80.INDEFINITE)
        return 0
    if fpu.valid >> ((fpu.top - 1) & 7) & 1:    # before the range check (silicon)
        fpu.sw &= ~C2
        if stack_overflow(fpu):
            fpu.set_st(0, f80.INDEFINITE)
            fpu.push(f80.INDEFINITE)
        return 0
    if got == "range":
        fpu.sw = fpu.sw & ~C1 | C2
        return 0
    fpu.sw &= ~C2
    raw, cls = got
    cw = fpu.cw
    bad = _trig_invalid(raw, cls, cw)
    if bad:
        if record(fpu, bad[1], False):
            fpu.set_st(0, bad[0])
            fpu.push(bad[0])
        return 0
    if cls == ZERO:                     # tan 0 = sin 0 = +-0, then 1.0 (cos 0 or FPTAN's)
        first, second = raw, f80.ONE
        record(fpu, 0, False)
        fpu.set_st(0, first)
        fpu.push(second)
        return 0
    de = DE if cls == DENORMAL else 0
    if de and not cw & DE:
        record(fpu, de, False)
        return 0
    if (raw >> 64) & f80.EXP_MAX < TINY_EXP:
        first, f1, c1 = near_identity(raw, 1 if which == "tan" else -1, cw)
        if which == "tan":
            second, f2 = f80.ONE, 0
        else:
            with localcontext(_ctx()):
                second, f2, _ = _round_decimal(Decimal(1), cw, -1)
        if record(fpu, f1 | f2 | de, c1):
            fpu.set_st(0, first)
            fpu.push(second)
        return 0
    with localcontext(_ctx()):
        s, c = _sin_cos(to_decimal(raw))
        if which == "tan":
            first, f1, c1 = _round_decimal(s / c, cw, 1)
            second, f2 = f80.ONE, 0
        else:
            first, f1, c1 = _round_decimal(s, cw, -1)      # C1 from the sine (silicon)
            second, f2, _ = _round_decimal(c, cw, -1)
    if record(fpu, f1 | f2 | de, c1):
        fpu.set_st(0, first)
        fpu.push(second)
    return 0


def fpatan(fpu, arg, mem, ctx):
    """ST(1) = arctan(ST(1) / ST(0)) in the quadrant of (ST(0), ST(1)); pops."""
    if fpu.is_empty(0) or fpu.is_empty(1):
        if stack_underflow(fpu):
            fpu.set_st(1, f80.INDEFINITE)
            fpu.pop()
        return 0
    x, y = fpu.st(0), fpu.st(1)
    cx, cy = _classify(x), _classify(y)
    bad = invalid_operands(y, cy, x, cx)
    if bad:
        write_result(fpu, 1, bad[0], bad[1], False, 1)
        return 0
    de = DE if cx == DENORMAL or cy == DENORMAL else 0
    if de and not fpu.cw & DE:
        record(fpu, de, False)
        return 0
    result, flags, c1 = _atan2(y, cy, x, cx, fpu.cw)
    write_result(fpu, 1, result, flags | de, c1, 1)
    return 0


def _atan2(y, cy, x, cx, cw):
    yneg, xneg = y >> 79, x >> 79
    with localcontext(_ctx()):
        if cy == ZERO:
            if not xneg:
                return f80.zero(yneg), 0, False
            angle = _PI
        elif cx == ZERO or (cy == INF and cx != INF):
            angle = _HALF_PI
        elif cy == INF:                     # both infinite
            angle = 3 * _PI / 4 if xneg else _PI / 4
        elif cx == INF:
            if not xneg:
                return f80.zero(yneg), 0, False
            angle = _PI
        else:
            angle = _atan(abs(to_decimal(y)) / abs(to_decimal(x)))
            if xneg:
                angle = _PI - angle
        return _round_decimal(-angle if yneg else angle, cw, -1)
