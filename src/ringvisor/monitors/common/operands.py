"""Operands of a decoded guest instruction (the soft CPU's decoder output,
`ringvisor.cpu.isa.decoder.Instr`) evaluated against a CpuState: registers by
encoding number and width, effective addresses with the segment the
instruction uses, and memory operands through the guest's page tables."""
from __future__ import annotations

from ringvisor.cpu.isa.operands import ea_moffs
from ringvisor.cpu_state import CpuState
from ringvisor.monitors.common.guest_mmu import GP, SS_FAULT, VirtualFault

GPRS = CpuState.GPRS
SEGS = CpuState.SEGMENTS


def reg(st: CpuState, i: int, width: int) -> int:
    if width == 1:
        v = getattr(st, GPRS[i & 3])
        return (v >> 8) & 0xFF if i >= 4 else v & 0xFF
    v = getattr(st, GPRS[i])
    return v & 0xFFFF if width == 2 else v & 0xFFFFFFFF


def set_reg(st: CpuState, i: int, width: int, value: int) -> None:
    if width == 1:
        name = GPRS[i & 3]
        old = getattr(st, name)
        shift = 8 if i >= 4 else 0
        setattr(st, name, (old & ~(0xFF << shift)) | ((value & 0xFF) << shift))
    elif width == 2:
        name = GPRS[i]
        setattr(st, name, (getattr(st, name) & 0xFFFF0000) | (value & 0xFFFF))
    else:
        setattr(st, GPRS[i], value & 0xFFFFFFFF)


def effective(ins, st: CpuState) -> tuple[int, int]:
    """(segment index, offset) of the instruction's memory operand."""
    if ins.eaf is ea_moffs:
        return ins.seg, ins.disp
    a = ins.disp
    if ins.base >= 0:
        a += getattr(st, GPRS[ins.base])
    if ins.index >= 0:
        a += getattr(st, GPRS[ins.index]) << ins.scale
    return ins.seg, a & (0xFFFF if ins.asz == 2 else 0xFFFFFFFF)


def linear(st: CpuState, seg: int, off: int, n: int) -> int:
    """Segment-checked linear address (expand-up and expand-down data)."""
    s = getattr(st, SEGS[seg])
    fault = SS_FAULT if SEGS[seg] == "ss" else GP
    if s.unusable or not s.present:
        raise VirtualFault(fault, 0)
    if s.s and not s.type & 8 and s.type & 4:                 # expand-down
        top = 0xFFFFFFFF if s.db else 0xFFFF
        if off <= s.limit or off + n - 1 > top:
            raise VirtualFault(fault, 0)
    elif off + n - 1 > s.limit:
        raise VirtualFault(fault, 0)
    return (s.base + off) & 0xFFFFFFFF


def read_memory(mon, ins, st: CpuState, n: int, disp: int = 0) -> int:
    seg, off = effective(ins, st)
    off = (off + disp) & (0xFFFF if ins.asz == 2 else 0xFFFFFFFF)
    return mon.gmmu.read_u(linear(st, seg, off, n), n, user=mon.vcpu.cpl == 3)


def read_rm16(mon, ins, st: CpuState) -> int:
    """An Ew operand: a register's low 16 bits or a word in memory."""
    if not ins.mem:
        return reg(st, ins.rm, 2)
    return read_memory(mon, ins, st, 2)
