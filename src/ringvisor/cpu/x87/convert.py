"""Conversions between register images and the memory formats (SDM vol. 1 4.2,
4.7, 8.2): m32fp, m64fp, m80fp, m16int, m32int, m64int and m80bcd.

Loads return (raw, flags); stores return (bits or None, flags, c1), None when
an unmasked exception forbids the store (the memory operand is left as it was).
"""
from __future__ import annotations

from ringvisor.cpu.x87 import float80 as f80
from ringvisor.cpu.x87.rounding import round_at, round_exact
from ringvisor.cpu.x87.state import DE, IE, OE, PE, UE

ZERO, NORMAL, DENORMAL, INF, QNAN, SNAN, UNSUPPORTED = range(7)


class BinaryFormat:
    """An IEEE binary interchange format as the x87 stores it."""

    def __init__(self, name, size, exp_bits, frac_bits):
        self.name, self.size = name, size
        self.exp_bits, self.frac_bits = exp_bits, frac_bits
        self.bias = (1 << (exp_bits - 1)) - 1
        self.exp_all = (1 << exp_bits) - 1
        self.emin, self.emax = 1 - self.bias, self.bias
        self.precision = frac_bits + 1
        self.sign_shift = exp_bits + frac_bits
        self.indefinite = (1 << self.sign_shift | self.exp_all << frac_bits
                           | 1 << (frac_bits - 1))


M32FP = BinaryFormat("m32fp", 4, 8, 23)
M64FP = BinaryFormat("m64fp", 8, 11, 52)


def load_binary(fmt: BinaryFormat, bits: int):
    """FLD m32fp/m64fp: exact widening; #D for denormals, #IA for SNaNs."""
    neg = bits >> fmt.sign_shift
    exp = (bits >> fmt.frac_bits) & fmt.exp_all
    frac = bits & ((1 << fmt.frac_bits) - 1)
    if exp == fmt.exp_all:
        sig = f80.INT_BIT | frac << (63 - fmt.frac_bits)
        raw = neg << 79 | f80.EXP_MAX << 64 | sig
        if frac and not frac >> (fmt.frac_bits - 1):
            return raw | f80.QUIET_BIT, IE
        return raw, 0
    if exp == 0:
        if frac == 0:
            return neg << 79, 0
        return f80.pack(neg, frac, fmt.emin - fmt.frac_bits), DE
    sig = (1 << fmt.frac_bits | frac) << (63 - fmt.frac_bits)
    return neg << 79 | (exp - fmt.bias + f80.BIAS) << 64 | sig, 0


def store_binary(fmt: BinaryFormat, raw: int, cw: int):
    """FST m32fp/m64fp: round to the format under RC (PC does not apply)."""
    cls = f80.classify(raw)
    neg = raw >> 79
    sign = neg << fmt.sign_shift
    if cls == UNSUPPORTED:
        return (fmt.indefinite if cw & IE else None), IE, False
    if cls == QNAN or cls == SNAN:
        flags = IE if cls == SNAN else 0
        if flags and not cw & IE:
            return None, flags, False
        frac = ((raw & f80.SIG_MASK) >> (63 - fmt.frac_bits)) | 1 << (fmt.frac_bits - 1)
        return sign | fmt.exp_all << fmt.frac_bits | frac & ((1 << fmt.frac_bits) - 1), flags, False
    if cls == INF:
        return sign | fmt.exp_all << fmt.frac_bits, 0, False
    if cls == ZERO:
        return sign, 0, False
    mag, e2 = f80.exact(raw)
    kind, m, e, flags, up = round_exact(
        neg, mag, e2, False, fmt.precision, fmt.emin, fmt.emax,
        (cw >> 10) & 3, bool(cw & UE), bool(cw & OE))
    if kind == 'o' or kind == 'u':
        return None, flags, up
    if kind == 'i':
        return sign | fmt.exp_all << fmt.frac_bits, flags, True
    if kind == 'l':
        return sign | (fmt.exp_all - 1) << fmt.frac_bits | ((1 << fmt.frac_bits) - 1), flags, False
    if m >> fmt.frac_bits:                  # normal
        return sign | (e + fmt.bias) << fmt.frac_bits | m & ((1 << fmt.frac_bits) - 1), flags, up
    return sign | m, flags, up


# Integers: size in bytes -> indefinite (the most negative value).
INT_INDEFINITE = {2: 0x8000, 4: 0x80000000, 8: 0x8000000000000000}


def load_int(size: int, bits: int) -> int:
    """FILD: exact."""
    if bits >> (size * 8 - 1):
        bits -= 1 << (size * 8)
    return f80.pack(1 if bits < 0 else 0, abs(bits), 0) if bits else 0


def round_to_integer(raw: int, rc: int):
    """(integer, inexact, up) of a finite register value."""
    mag, e2 = f80.exact(raw)
    neg = raw >> 79
    value, inexact, up = round_at(neg, mag, e2, False, 0, rc)
    return (-value if neg else value), inexact, up


def store_int(size: int, raw: int, cw: int):
    """FIST/FISTP: round under RC; NaN, infinity or out of range is #IA with
    the integer indefinite as the masked response."""
    cls = f80.classify(raw)
    if cls == ZERO:
        return 0, 0, False
    if cls in (NORMAL, DENORMAL):
        value, inexact, up = round_to_integer(raw, (cw >> 10) & 3)
        limit = 1 << (size * 8 - 1)
        if -limit <= value < limit:
            return value & ((1 << (size * 8)) - 1), PE if inexact else 0, up
    return (INT_INDEFINITE[size] if cw & IE else None), IE, False


BCD_INDEFINITE = 0xFFFF << 64 | 0xC000 << 48
BCD_LIMIT = 10 ** 18


def load_bcd(bits: int) -> int:
    """FBLD: 18 packed digits and a sign byte (bit 79)."""
    value = 0
    for i in range(17, -1, -1):
        value = value * 10 + ((bits >> (4 * i)) & 0xF)
    neg = bits >> 79 & 1
    return f80.pack(neg, value, 0) if value else neg << 79


def store_bcd(raw: int, cw: int):
    """FBSTP: round under RC to at most 18 digits."""
    cls = f80.classify(raw)
    if cls == ZERO:
        return (raw >> 79) << 79, 0, False
    if cls in (NORMAL, DENORMAL):
        value, inexact, up = round_to_integer(raw, (cw >> 10) & 3)
        if abs(value) < BCD_LIMIT:
            digits = 0
            for i, ch in enumerate(reversed(str(abs(value)))):
                digits |= int(ch) << (4 * i)
            return (raw >> 79) << 79 | digits, PE if inexact else 0, up
    return (BCD_INDEFINITE if cw & IE else None), IE, False
