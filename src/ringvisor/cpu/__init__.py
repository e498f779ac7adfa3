"""The soft engine: a pure-Python IA-32 CPU (i486/Pentium integer ISA, no FPU).

One declarative opcode table (isa/opcodes.py) drives the decoder, the
interpreter, the block compiler (compiler/) and the disassembler; semantics
are grouped by SDM topic in semantics/ (arith, logic, shift, datamove, string,
control, transfer, segments, protection, interrupts, task, system).
"""
from ringvisor.cpu.semantics import (arith, control, datamove, fpu, interrupts, logic,  # noqa: F401
                                     protection, segments, shift, string, system, transfer)
from ringvisor.cpu.semantics.registry import bind as _bind

MISSING = _bind()

from ringvisor.cpu.engine import SoftEngine  # noqa: E402

__all__ = ["SoftEngine", "MISSING"]
