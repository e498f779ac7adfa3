"""FADD/FSUB/FSUBR/FMUL/FDIV/FDIVR in every form (ST(0),ST(i); ST(i),ST(0);
the P forms; m32fp, m64fp; FIADD... m16int/m32int), FCHS, FABS, FSQRT.

Handlers have the signature handler(fpu, arg, mem, ctx) -> outcome (0).
"""
from __future__ import annotations

from ringvisor.cpu.x87 import arith, convert
from ringvisor.cpu.x87 import float80 as f80
from ringvisor.cpu.x87.ops import record, stack_underflow, write_result
from ringvisor.cpu.x87.state import DE, IE


def _add(a, b, cw):
    return arith.add(a, b, cw)


def _sub(a, b, cw):
    return arith.add(a, b, cw, True)


def _subr(a, b, cw):
    return arith.add(b, a, cw, True)


def _mul(a, b, cw):
    return arith.mul(a, b, cw)


def _div(a, b, cw):
    return arith.div(a, b, cw)


def _divr(a, b, cw):
    return arith.div(b, a, cw)


# The reg field of D8/DC/DA/DE memory forms and of D8 register forms.
OPERATIONS = {"ADD": _add, "MUL": _mul, "SUB": _sub, "SUBR": _subr,
              "DIV": _div, "DIVR": _divr}


def arith_registers(fpu, arg, mem, ctx):
    """arg = (operation, i, to_sti, pops): ST(0) op= ST(i), or ST(i) op= ST(0)."""
    op, i, to_sti, pops = arg
    if fpu.is_empty(0) or fpu.is_empty(i):
        if stack_underflow(fpu):
            fpu.set_st(i if to_sti else 0, f80.INDEFINITE)
            if pops:
                fpu.pop()
        return 0
    st0, sti = fpu.st(0), fpu.st(i)
    if to_sti:
        raw, flags, c1 = op(sti, st0, fpu.cw)
        write_result(fpu, i, raw, flags, c1, pops)
    else:
        raw, flags, c1 = op(st0, sti, fpu.cw)
        write_result(fpu, 0, raw, flags, c1, pops)
    return 0


def load_operand(fmt, mem):
    """A memory source as a register image plus the flags its conversion raises."""
    kind, size = fmt
    bits = mem.read(0, size)
    if kind == "fp":
        return convert.load_binary(convert.M32FP if size == 4 else convert.M64FP, bits)
    return convert.load_int(size, bits), 0


def arith_memory(fpu, arg, mem, ctx):
    """arg = (operation, format): ST(0) = ST(0) op [mem]."""
    op, fmt = arg
    b, load_flags = load_operand(fmt, mem)
    if fpu.is_empty(0):
        if stack_underflow(fpu):
            fpu.set_st(0, f80.INDEFINITE)
        return 0
    a = fpu.st(0)
    raw, flags, c1 = op(a, b, fpu.cw)
    if load_flags & DE:
        # A denormal m32fp/m64fp source: #D unless the operation is invalid
        # (a NaN or unsupported ST(0) takes precedence, silicon shows).
        if flags & IE or f80.classify(a) >= f80.QNAN:
            load_flags = 0
        elif not fpu.cw & DE:
            record(fpu, DE, False)
            return 0
    write_result(fpu, 0, raw, flags | load_flags, c1)
    return 0


def fchs(fpu, arg, mem, ctx):
    return _sign_op(fpu, lambda raw: raw ^ f80.SIGN)


def fabs(fpu, arg, mem, ctx):
    return _sign_op(fpu, lambda raw: raw & ~f80.SIGN)


def _sign_op(fpu, change):
    if fpu.is_empty(0):
        if stack_underflow(fpu):
            fpu.set_st(0, f80.INDEFINITE)
        return 0
    record(fpu, 0, False)
    fpu.set_st(0, change(fpu.st(0)))
    return 0


def unary(fpu, arg, mem, ctx):
    """ST(0) = f(ST(0)) for FSQRT, FRNDINT and friends: arg(raw, cw)."""
    if fpu.is_empty(0):
        if stack_underflow(fpu):
            fpu.set_st(0, f80.INDEFINITE)
        return 0
    raw, flags, c1 = arg(fpu.st(0), fpu.cw)
    write_result(fpu, 0, raw, flags, c1)
    return 0


def fsqrt(raw, cw):
    return arith.sqrt(raw, cw)
