"""Rounding an exact result to a precision and exponent range (SDM vol. 1 4.8.4,
8.1.5.2-3, 4.9.1.4-5), with the masked and unmasked responses to numeric
overflow and underflow.

An exact result is given as `mag * 2**e2`, plus `sticky` when nonzero bits were
dropped below `mag`'s last bit (quotients, square roots, far-apart addends).
Tininess is detected after rounding, as x86 processors do: a result is tiny when
rounding it with an unbounded exponent gives a magnitude below 2**emin.
"""
from __future__ import annotations

from ringvisor.cpu.x87 import float80 as f80
from ringvisor.cpu.x87.state import OE, PE, UE, RC_NEAREST, RC_DOWN, RC_UP

# Precision control (CW bits 8-9) -> significand bits; 1 is reserved (64 here).
PRECISION = (24, 64, 53, 64)
# Unmasked overflow/underflow on a register destination: the exponent is
# wrapped by this bias adjust (SDM vol. 1 8.5.4.1, 8.5.5.1).
BIAS_ADJUST = 24576


def round_at(neg: int, mag: int, e2: int, sticky: bool, eq: int, rc: int):
    """Round mag*2**e2 (+sticky) to a multiple of 2**eq: (multiple, inexact, up)."""
    shift = eq - e2
    if shift <= 0:                  # only the sticky tail lies below the quantum
        kept, rem, half = mag << -shift, 0, 1
    else:
        kept = mag >> shift
        rem = mag & ((1 << shift) - 1)
        half = 1 << (shift - 1)
    if not rem and not sticky:
        return kept, False, False
    if rc == RC_NEAREST:
        inc = rem > half or (rem == half and (sticky or kept & 1))
    elif rc == RC_DOWN:
        inc = bool(neg)
    elif rc == RC_UP:
        inc = not neg
    else:
        inc = False
    return kept + inc, True, bool(inc)


def round_exact(neg: int, mag: int, e2: int, sticky: bool, p: int,
                emin: int, emax: int, rc: int, ue_masked: bool, oe_masked: bool):
    """Round to p bits within [emin, emax]. Returns (kind, m, exponent, flags, up):
    kind 'n' finite: value = m * 2**(exponent - p + 1), m < 2**p (denormal when
    m < 2**(p-1)); 'o'/'u' unmasked overflow/underflow: m, exponent unbounded
    (the caller adjusts or refuses); 'i' infinity; 'l' largest finite."""
    n = mag.bit_length()
    e = e2 + n - 1
    m, inexact, up = round_at(neg, mag, e2, sticky, e - p + 1, rc)
    if m >> p:
        m >>= 1
        e += 1
    flags = PE if inexact else 0
    if e < emin:
        if not ue_masked:
            return 'u', m, e, flags | UE, up
        m, inexact, up = round_at(neg, mag, e2, sticky, emin - p + 1, rc)
        if inexact:
            flags = UE | PE
        return 'n', m, emin, flags, up
    if e > emax:
        if not oe_masked:
            return 'o', m, e, flags | OE, up
        away = (rc == RC_NEAREST or (rc == RC_UP and not neg)
                or (rc == RC_DOWN and neg))
        return ('i' if away else 'l'), 0, 0, OE | PE, away
    return 'n', m, e, flags, up


def to_register(neg: int, mag: int, e2: int, sticky: bool, cw: int):
    """Round an exact nonzero result to a register under CW's PC and RC:
    (raw, flags, c1). Unmasked overflow/underflow deliver the bias-adjusted
    result, as the SDM's unmasked response for register destinations."""
    p = PRECISION[(cw >> 8) & 3]
    rc = (cw >> 10) & 3
    kind, m, e, flags, up = round_exact(neg, mag, e2, sticky, p, f80.EMIN, f80.EMAX,
                                        rc, bool(cw & UE), bool(cw & OE))
    if kind == 'n':
        sig = m << (64 - p)
        if sig < f80.INT_BIT:                    # denormal (or zero)
            return neg << 79 | sig, flags, up
        return neg << 79 | (e + f80.BIAS) << 64 | sig, flags, up
    if kind == 'i':
        return f80.infinity(neg), flags, True
    if kind == 'l':
        return f80.largest(neg, p), flags, False
    e += BIAS_ADJUST if kind == 'u' else -BIAS_ADJUST
    exp = e + f80.BIAS
    if not 0 < exp < f80.EXP_MAX:               # beyond even the wrapped range
        if kind == 'u':
            return f80.zero(neg), flags | PE, False
        return f80.infinity(neg), flags | PE, True      # FSCALE by huge powers (silicon)
    return neg << 79 | exp << 64 | m << (64 - p), flags, up


def round_exact_value(neg: int, mag: int, e2: int, sticky: bool, cw: int):
    """to_register for a result that may be exactly zero (mag == 0)."""
    if mag == 0 and not sticky:
        return neg << 79, 0, False
    return to_register(neg, mag, e2, sticky, cw)
