"""Comparison and classification (SDM vol. 1 8.3.6-8.3.7): FCOM/FCOMP/FCOMPP,
FUCOM/FUCOMP/FUCOMPP, FICOM/FICOMP, FCOMI/FCOMIP/FUCOMI/FUCOMIP (EFLAGS),
FTST and FXAM.
"""
from __future__ import annotations

from ringvisor.cpu.x87 import float80 as f80
from ringvisor.cpu.x87.basic_arith import load_operand
from ringvisor.cpu.x87.ops import record, stack_underflow
from ringvisor.cpu.x87.state import C0, C1, C2, C3, DE, IE

ZERO, NORMAL, DENORMAL, INF, QNAN, SNAN, UNSUPPORTED = range(7)
GREATER, LESS, EQUAL, UNORDERED = 0, C0, C3, C0 | C2 | C3
# The same outcomes as EFLAGS for FCOMI: ZF PF CF.
EFLAGS_OF = {GREATER: 0, LESS: 0x01, EQUAL: 0x40, UNORDERED: 0x45}
EFLAGS_STATUS = 0x8D5           # OF SF ZF AF PF CF


def compare(a: int, b: int, quiet: bool, cw: int):
    """(outcome, flags): the relation of a to b. Any NaN is #IA unless `quiet`
    (FUCOM*: QNaNs compare unordered silently); unsupported formats always."""
    ca, cb = f80.classify(a), f80.classify(b)
    if ca == UNSUPPORTED or cb == UNSUPPORTED:
        return UNORDERED, IE
    if ca >= QNAN or cb >= QNAN:
        signalling = ca == SNAN or cb == SNAN or not quiet
        return UNORDERED, IE if signalling else 0
    flags = DE if ca == DENORMAL or cb == DENORMAL else 0
    va, vb = _ordered_key(a, ca), _ordered_key(b, cb)
    if va == vb:
        return EQUAL, flags
    return (GREATER if va > vb else LESS), flags


def _ordered_key(raw: int, cls: int):
    """A tuple that orders register values as the reals (and infinities) do."""
    if cls == ZERO:
        return (0,)
    if cls == INF:
        key = (1, 0, 0)
    else:
        sig, e2 = f80.exact(raw)
        shift = 64 - sig.bit_length()
        key = (0, e2 - shift, sig << shift)
    if raw >> 79:
        return (-1,) + tuple(-k for k in key)
    return (1,) + key


def _set_condition(fpu, outcome, flags):
    """The codes are set even when #IA or #D is unmasked (silicon); True when
    the instruction may pop (no unmasked exception)."""
    delivered = record(fpu, flags, False)
    fpu.sw = fpu.sw & ~(C0 | C2 | C3) | outcome
    return delivered


def _underflow_codes(fpu, pops):
    """An empty operand: unordered, popping only under the masked response."""
    masked = stack_underflow(fpu)
    fpu.sw |= UNORDERED
    if masked:
        _pop(fpu, pops)


def fcom_registers(fpu, arg, mem, ctx):
    """arg = (i, quiet, pops)."""
    i, quiet, pops = arg
    if fpu.is_empty(0) or fpu.is_empty(i):
        _underflow_codes(fpu, pops)
        return 0
    outcome, flags = compare(fpu.st(0), fpu.st(i), quiet, fpu.cw)
    if _set_condition(fpu, outcome, flags):
        _pop(fpu, pops)
    return 0


def _pop(fpu, pops):
    for _ in range(pops):
        fpu.pop()


def fcom_memory(fpu, arg, mem, ctx):
    """arg = (format, pops): FCOM m32fp/m64fp, FICOM m16int/m32int."""
    fmt, pops = arg
    b, load_flags = load_operand(fmt, mem)
    if fpu.is_empty(0):
        _underflow_codes(fpu, pops)
        return 0
    outcome, flags = compare(fpu.st(0), b, False, fpu.cw)
    if flags & IE:                      # #IA takes precedence over a denormal m32/m64
        load_flags = 0
    if _set_condition(fpu, outcome, flags | load_flags):
        _pop(fpu, pops)
    return 0


def ftst(fpu, arg, mem, ctx):
    if fpu.is_empty(0):
        _underflow_codes(fpu, 0)
        return 0
    outcome, flags = compare(fpu.st(0), 0, False, fpu.cw)
    _set_condition(fpu, outcome, flags)
    return 0


def fcomi(fpu, arg, mem, ctx):
    """arg = (i, quiet, pops): the outcome goes to ZF, PF, CF (OF SF AF clear)
    even under an unmasked exception; C1 is left as it was (silicon)."""
    i, quiet, pops = arg
    if fpu.is_empty(0) or fpu.is_empty(i):
        masked = stack_underflow(fpu)
        ctx.eflags = ctx.eflags & ~EFLAGS_STATUS | EFLAGS_OF[UNORDERED]
        if masked:
            _pop(fpu, pops)
        return 0
    outcome, flags = compare(fpu.st(0), fpu.st(i), quiet, fpu.cw)
    delivered = record(fpu, flags, bool(fpu.sw & C1))
    ctx.eflags = ctx.eflags & ~EFLAGS_STATUS | EFLAGS_OF[outcome]
    if delivered:
        _pop(fpu, pops)
    return 0


# FXAM classes in C3 C2 C0.
_FXAM = {UNSUPPORTED: 0, QNAN: C0, SNAN: C0, NORMAL: C2, INF: C2 | C0,
         ZERO: C3, DENORMAL: C3 | C2}
_FXAM_EMPTY = C3 | C0


def fxam(fpu, arg, mem, ctx):
    raw = fpu.st(0)
    code = _FXAM_EMPTY if fpu.is_empty(0) else _FXAM[f80.classify(raw)]
    sign = C1 if raw >> 79 else 0
    fpu.sw = fpu.sw & ~(C0 | C1 | C2 | C3) | code | sign
    return 0
