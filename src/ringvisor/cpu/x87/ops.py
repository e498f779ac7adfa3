"""What every x87 instruction shares: recording exceptions in the status word
(with the masked/unmasked decision) and the stack-fault responses
(SDM vol. 1 8.5.1.1: #IS sets IE and SF; C1 tells overflow from underflow).
"""
from __future__ import annotations

from ringvisor.cpu.x87 import float80 as f80
from ringvisor.cpu.x87.state import B, C1, DE, ES, EXCEPTIONS, IE, SF, ZE

PRE = IE | DE | ZE              # unmasked: the destination is not written


def record(fpu, flags: int, c1: bool) -> bool:
    """Set the flags and C1; True when the result must be delivered."""
    sw = (fpu.sw & ~C1) | flags
    if c1:
        sw |= C1
    unmasked = flags & ~fpu.cw & EXCEPTIONS
    if unmasked:
        sw |= ES | B
    fpu.sw = sw
    return not unmasked & PRE


def stack_underflow(fpu) -> bool:
    """A source register is empty: True when the masked response applies."""
    return record(fpu, IE | SF, False)


def stack_overflow(fpu) -> bool:
    """A push onto a full register: True when the masked response applies."""
    return record(fpu, IE | SF, True)


def push(fpu, raw: int):
    """Push with the stack-overflow check (FLD and the constants)."""
    if fpu.valid >> ((fpu.top - 1) & 7) & 1:
        if stack_overflow(fpu):
            fpu.push(f80.INDEFINITE)
        return False
    fpu.push(raw)
    return True


def write_result(fpu, dst: int, raw, flags: int, c1: bool, pops: int = 0):
    """Deliver an arithmetic result to ST(dst) and pop, unless an unmasked
    pre-computation exception forbids it."""
    if record(fpu, flags, c1) and raw is not None:
        fpu.set_st(dst, raw)
        for _ in range(pops):
            fpu.pop()
