"""The soft engine: a pure-Python IA-32 CPU (i486/Pentium integer ISA, no FPU).

One declarative opcode table (opcodes.py) drives the decoder, the
interpreter, the block compiler and the disassembler; semantics are grouped
by SDM topic (arith, logic, shift, datamove, string, control, transfer,
segments, protection, paging, interrupts, task, system).
"""
from ringvisor.cpu import (arith, control, datamove, interrupts, logic, protection,  # noqa: F401
                           segments, shift, string, system, transfer)
from ringvisor.cpu.isa import bind as _bind

MISSING = _bind()

from ringvisor.cpu.engine import SoftEngine  # noqa: E402

__all__ = ["SoftEngine", "MISSING"]
