"""The 80-bit extended-precision format as exact Python integers.

A register value is one int: sign << 79 | biased exponent << 64 | significand,
the significand carrying its explicit integer bit (bit 63). Its exact value is
(-1)**sign * significand * 2**(max(exponent, 1) - 16383 - 63).

Classes follow SDM vol. 1 8.2.2 and table 8-3 for a Pentium II and later:
pseudo-denormals (exponent 0, integer bit 1) are valid operands that raise #D;
unnormals, pseudo-NaNs and pseudo-infinities are invalid operands (#IA).
"""
from __future__ import annotations

BIAS = 16383
EXP_MAX = 0x7FFF
INT_BIT = 1 << 63
QUIET_BIT = 1 << 62
SIG_MASK = (1 << 64) - 1
SIGN = 1 << 79
EMIN = 1 - BIAS                 # unbiased exponent of the smallest normal
EMAX = EXP_MAX - 1 - BIAS       # unbiased exponent of the largest finite

# Operand classes.
ZERO, NORMAL, DENORMAL, INF, QNAN, SNAN, UNSUPPORTED = range(7)

POS_INF = EXP_MAX << 64 | INT_BIT
INDEFINITE = SIGN | EXP_MAX << 64 | INT_BIT | QUIET_BIT     # the real indefinite
NEG_ZERO = SIGN
ONE = BIAS << 64 | INT_BIT


def classify(raw: int) -> int:
    exp = (raw >> 64) & EXP_MAX
    sig = raw & SIG_MASK
    if exp == 0:
        return ZERO if sig == 0 else DENORMAL     # pseudo-denormals included
    if exp == EXP_MAX:
        if not sig & INT_BIT:
            return UNSUPPORTED                   # pseudo-infinity, pseudo-NaN
        if sig == INT_BIT:
            return INF
        return QNAN if sig & QUIET_BIT else SNAN
    return NORMAL if sig & INT_BIT else UNSUPPORTED   # unnormal


def is_nan(cls: int) -> bool:
    return cls == QNAN or cls == SNAN


def sign_of(raw: int) -> int:
    return raw >> 79


def exact(raw: int) -> tuple[int, int]:
    """(significand, e2) of a finite value: |value| = significand * 2**e2."""
    exp = (raw >> 64) & EXP_MAX
    return raw & SIG_MASK, (exp or 1) - BIAS - 63


def quiet(raw: int) -> int:
    return raw | QUIET_BIT


def largest(neg: int, precision: int) -> int:
    """The largest finite value at a precision (masked overflow towards zero)."""
    sig = ((1 << precision) - 1) << (64 - precision)
    return neg << 79 | (EXP_MAX - 1) << 64 | sig


def infinity(neg: int) -> int:
    return neg << 79 | POS_INF


def zero(neg: int) -> int:
    return neg << 79


def pack(neg: int, mag: int, e2: int) -> int:
    """An exactly representable value (mag * 2**e2, mag < 2**64 after
    normalisation, in range) as a register image; used for exact results."""
    if mag == 0:
        return neg << 79
    shift = 64 - mag.bit_length()
    if shift >= 0:
        mag <<= shift
    else:
        mag >>= -shift                           # exact by contract
    e2 -= shift
    exp = e2 + 63 + BIAS
    if exp <= 0:                                 # denormal: exact by contract
        return neg << 79 | mag >> (1 - exp)
    return neg << 79 | exp << 64 | mag


def to_fraction(raw: int):
    """The exact value as (numerator, denominator) for tests and diagnostics."""
    sig, e2 = exact(raw)
    num = -sig if raw >> 79 else sig
    return (num << e2, 1) if e2 >= 0 else (num, 1 << -e2)
