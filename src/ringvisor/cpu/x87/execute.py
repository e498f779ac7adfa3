"""The one entry point the CPU calls for an x87 instruction (and WAIT/FWAIT).

Order of checks, as the SDM gives them (vol. 3 2.5 table 2-2 for CR0.EM/TS/MP,
vol. 1 8.6-8.7 for pending exceptions):
  1. #NM: CR0.EM or CR0.TS for ESC instructions; CR0.MP and CR0.TS for WAIT.
  2. a waiting instruction with an unmasked exception pending (ES=1): #MF when
     CR0.NE=1; otherwise FERR# is asserted and the instruction freezes until
     IGNNE# (PC: a write to port 0xF0 by the IRQ13 handler) lets it run.
  3. the instruction pointer, opcode and data pointer are recorded for every
     non-control instruction;
  4. the instruction runs.
"""
from __future__ import annotations

from ringvisor.cpu.x87.state import ES
from ringvisor.cpu.x87.table import TABLE

# Outcomes
DONE = 0
UD = 6          # #UD: not an instruction of this FPU
NM = 7          # #NM: device not available
MF = 16         # #MF: x87 floating-point error (CR0.NE = 1)
FERR = -1       # FERR# asserted (CR0.NE = 0): raise IRQ13, retry the instruction

CR0_MP, CR0_EM, CR0_TS, CR0_NE = 2, 4, 8, 0x20
WAIT_OPCODE = 0x9B
_ARITH, _CONTROL, _NOWAIT = 0, 1, 2
_get = TABLE.get


def execute(fpu, opcode: int, modrm: int, mem, ctx) -> int:
    cr0 = ctx.cr0
    if opcode == WAIT_OPCODE:
        if cr0 & (CR0_MP | CR0_TS) == CR0_MP | CR0_TS:
            return NM
        return _pending(fpu, cr0) if fpu.sw & ES else DONE
    entry = _get(opcode << 8 | (modrm if modrm >= 0xC0 else modrm & 0x38))
    if entry is None:
        return UD
    if cr0 & (CR0_EM | CR0_TS):
        return NM
    handler, arg, kind, _ = entry
    if kind != _NOWAIT and fpu.sw & ES:
        outcome = _pending(fpu, cr0)
        if outcome:
            return outcome
    if kind == _ARITH:
        fpu.fip = ctx.eip
        fpu.fcs = ctx.cs
        fpu.fop = (opcode & 7) << 8 | modrm
        if mem is not None:
            fpu.fdp = mem.ea
            fpu.fds = mem.seg
    return handler(fpu, arg, mem, ctx)


def _pending(fpu, cr0) -> int:
    if cr0 & CR0_NE:
        return MF
    return DONE if fpu.ignne else FERR


def mnemonic(opcode: int, modrm: int) -> str | None:
    """The SDM mnemonic of an encoding, for traces and reports."""
    if opcode == WAIT_OPCODE:
        return "FWAIT"
    entry = _get(opcode << 8 | (modrm if modrm >= 0xC0 else modrm & 0x38))
    return entry[3] if entry else None
