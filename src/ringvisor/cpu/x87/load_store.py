"""Data transfer (SDM vol. 1 8.3.3): FLD/FST/FSTP in every format, FILD,
FIST/FISTP, FBLD/FBSTP, FXCH, FCMOVcc, FFREE/FFREEP, FINCSTP/FDECSTP and the
constants FLD1, FLDZ, FLDPI, FLDL2E, FLDL2T, FLDLG2, FLDLN2.
"""
from __future__ import annotations

from decimal import Decimal, getcontext

from ringvisor.cpu.x87 import convert
from ringvisor.cpu.x87 import float80 as f80
from ringvisor.cpu.x87.ops import push, record, stack_underflow
from ringvisor.cpu.x87.rounding import round_at
from ringvisor.cpu.x87.state import C1, IE, PE

# (kind, size) memory formats
M32FP, M64FP, M80FP = ("fp", 4), ("fp", 8), ("fp80", 10)
M16INT, M32INT, M64INT = ("int", 2), ("int", 4), ("int", 8)
M80BCD = ("bcd", 10)


def fld_memory(fpu, fmt, mem, ctx):
    kind, size = fmt
    bits = mem.read(0, size)
    flags = 0
    if kind == "fp":
        raw, flags = convert.load_binary(convert.M32FP if size == 4 else convert.M64FP, bits)
    elif kind == "fp80":
        raw = bits
    elif kind == "int":
        raw = convert.load_int(size, bits)
    else:
        raw = convert.load_bcd(bits)
    if fpu.valid >> ((fpu.top - 1) & 7) & 1:
        return _overflow_push(fpu)
    record(fpu, flags, False)
    if not flags & IE & ~fpu.cw:        # an unmasked #D still loads (silicon)
        fpu.push(raw)
    return 0


def _overflow_push(fpu):
    push(fpu, f80.INDEFINITE)
    return 0


def fld_register(fpu, i, mem, ctx):
    if fpu.is_empty(i):                 # underflow wins over overflow (silicon)
        if stack_underflow(fpu):
            fpu.push(f80.INDEFINITE)
        return 0
    raw = fpu.st(i)
    if push(fpu, raw):
        record(fpu, 0, False)
    return 0


def fst_memory(fpu, arg, mem, ctx):
    """arg = (format, pops)."""
    (kind, size), pops = arg
    if fpu.is_empty(0):
        if stack_underflow(fpu):
            mem.write(0, size, _indefinite(kind, size))
            if pops:
                fpu.pop()
        return 0
    raw = fpu.st(0)
    cw = fpu.cw
    if kind == "fp":
        bits, flags, c1 = convert.store_binary(
            convert.M32FP if size == 4 else convert.M64FP, raw, cw)
    elif kind == "fp80":
        bits, flags, c1 = raw, 0, False
    elif kind == "int":
        bits, flags, c1 = convert.store_int(size, raw, cw)
    else:
        bits, flags, c1 = convert.store_bcd(raw, cw)
    if bits is None:            # unmasked: nothing stored, no PE, C1 clear (silicon)
        record(fpu, flags & ~PE, False)
        return 0
    mem.write(0, size, bits)            # may fault: state untouched until now
    record(fpu, flags, c1)
    if pops:
        fpu.pop()
    return 0


def _indefinite(kind, size):
    if kind == "fp":
        return (convert.M32FP if size == 4 else convert.M64FP).indefinite
    if kind == "fp80":
        return f80.INDEFINITE
    if kind == "int":
        return convert.INT_INDEFINITE[size]
    return convert.BCD_INDEFINITE


def fst_register(fpu, arg, mem, ctx):
    """arg = (i, pops): ST(i) = ST(0)."""
    i, pops = arg
    if fpu.is_empty(0):
        if stack_underflow(fpu):
            fpu.set_st(i, f80.INDEFINITE)
            if pops:
                fpu.pop()
        return 0
    record(fpu, 0, False)
    fpu.set_st(i, fpu.st(0))
    if pops:
        fpu.pop()
    return 0


def fxch(fpu, i, mem, ctx):
    if fpu.is_empty(0) or fpu.is_empty(i):
        if not stack_underflow(fpu):
            return 0
        a = f80.INDEFINITE if fpu.is_empty(0) else fpu.st(0)
        b = f80.INDEFINITE if fpu.is_empty(i) else fpu.st(i)
    else:
        record(fpu, 0, False)
        a, b = fpu.st(0), fpu.st(i)
    fpu.set_st(0, b)
    fpu.set_st(i, a)
    return 0


# FCMOVcc conditions on EFLAGS (CF=1, ZF=0x40, PF=4).
CONDITIONS = {
    "B": lambda f: f & 1, "E": lambda f: f & 0x40, "BE": lambda f: f & 0x41,
    "U": lambda f: f & 4, "NB": lambda f: not f & 1, "NE": lambda f: not f & 0x40,
    "NBE": lambda f: not f & 0x41, "NU": lambda f: not f & 4,
}


def fcmov(fpu, arg, mem, ctx):
    """arg = (condition, i): ST(0) = ST(i) when the condition holds."""
    cond, i = arg
    if fpu.is_empty(0) or fpu.is_empty(i):
        if stack_underflow(fpu):
            fpu.set_st(0, f80.INDEFINITE)
        return 0
    # C1 is left as it was (silicon; the SDM leaves it unspecified here).
    if CONDITIONS[cond](ctx.eflags):
        fpu.set_st(0, fpu.st(i))
    return 0


def ffree(fpu, arg, mem, ctx):
    """arg = (i, pops). C1 is cleared (silicon)."""
    i, pops = arg
    fpu.sw &= ~C1
    fpu.valid &= ~(1 << ((fpu.top + i) & 7))
    if pops:
        fpu.pop()
    return 0


def fincstp(fpu, arg, mem, ctx):
    fpu.sw &= ~C1
    fpu.top = (fpu.top + arg) & 7
    return 0


# The constants, exact to 160 bits (a sticky tail beyond), rounded under RC
# when loaded (SDM vol. 1 8.3.5: they honour RC, not PC; PE is not set).
def _constants():
    getcontext().prec = 80
    ln2 = Decimal(2).ln()
    pi = _pi()
    values = {"L2T": Decimal(10).ln() / ln2, "L2E": 1 / ln2, "PI": pi,
              "LG2": Decimal(2).log10(), "LN2": ln2}
    return {name: _as_scaled(v) for name, v in values.items()}


def _pi() -> Decimal:
    # Machin: pi = 16 atan(1/5) - 4 atan(1/239)
    def atan_inv(x):
        total, term, n, sign = Decimal(0), Decimal(1) / x, 1, 1
        x2 = x * x
        while term:
            total += sign * term / n
            term /= x2
            n += 2
            sign = -sign
            if term < Decimal(10) ** -78:
                break
        return total
    return 16 * atan_inv(Decimal(5)) - 4 * atan_inv(Decimal(239))


def _as_scaled(value: Decimal):
    """(mag, e2) with mag of 160 bits and value = mag * 2**e2 (truncated, sticky)."""
    e2 = -160
    while value * (Decimal(2) ** -e2) >= Decimal(2) ** 160:
        e2 += 1
    while value * (Decimal(2) ** -e2) < Decimal(2) ** 159:
        e2 -= 1
    return int(value * (Decimal(2) ** -e2)), e2


CONSTANT_VALUES = _constants()


def constant_image(name: str, rc: int) -> int:
    if name == "1":
        return f80.ONE
    if name == "Z":
        return 0
    mag, e2 = CONSTANT_VALUES[name]
    # Rounded from the exact value under RC (silicon rounds FLDLG2 to nearest
    # up, which a 66-bit internal constant with ties-to-even would not).
    m, _, _ = round_at(0, mag, e2, True, e2 + mag.bit_length() - 64, rc)
    return f80.pack(0, m, e2 + mag.bit_length() - 64)


def fld_constant(fpu, name, mem, ctx):
    if push(fpu, constant_image(name, (fpu.cw >> 10) & 3)):
        record(fpu, 0, False)
    return 0
