"""Operand accessors bound by the decoder: (getter, setter, write-back, width).

Getters are `g(cpu, ins) -> int`, setters `s(cpu, ins, value)`. A memory
getter leaves the effective address in `cpu.ea`; the write-back setter of a
read-modify-write instruction reuses it, the plain setter recomputes it (so
`POP [ESP+x]` sees ESP after the pop, as the SDM specifies).
"""
from __future__ import annotations

MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF, 8: 0xFFFFFFFFFFFFFFFF}


def ea16(cpu, ins) -> int:
    r = cpu.r
    a = ins.disp
    if ins.base >= 0:
        a += r[ins.base]
    if ins.index >= 0:
        a += r[ins.index]
    return a & 0xFFFF


def ea32(cpu, ins) -> int:
    r = cpu.r
    a = ins.disp
    if ins.base >= 0:
        a += r[ins.base]
    if ins.index >= 0:
        a += r[ins.index] << ins.scale
    return a & 0xFFFFFFFF


def ea_moffs(cpu, ins) -> int:
    return ins.disp


def get_for_update(cpu, ins) -> int:
    """Operand 0 of a read-modify-write instruction. A memory destination is
    read with the write checks made at once (segment writable and in limit,
    page writable), as the processor does: a faulting instruction changes
    nothing, so the fault must come before the flags change (found by the
    differential tests: ADD/SHL/BTS... into a read-only segment left their
    flags behind)."""
    v = ins.g0(cpu, ins)
    if ins.mem and ins.row.operands[0].kind in "EM":     # not when memory is the source
        cpu.check_wr(ins.seg, cpu.ea, ins.w)
    return v


def get_imm(cpu, ins) -> int:
    return ins.imm


def get_imm2(cpu, ins) -> int:
    return ins.imm2


def get_one(cpu, ins) -> int:
    return 1


def _reg32(i):
    def g(cpu, ins):
        return cpu.r[i]

    def s(cpu, ins, v):
        cpu.r[i] = v & 0xFFFFFFFF
    return g, s, s, 4


def _reg16(i):
    def g(cpu, ins):
        return cpu.r[i] & 0xFFFF

    def s(cpu, ins, v):
        r = cpu.r
        r[i] = (r[i] & 0xFFFF0000) | (v & 0xFFFF)
    return g, s, s, 2


def _reg8(i):
    if i < 4:
        def g(cpu, ins):
            return cpu.r[i] & 0xFF

        def s(cpu, ins, v):
            r = cpu.r
            r[i] = (r[i] & 0xFFFFFF00) | (v & 0xFF)
    else:
        j = i - 4

        def g(cpu, ins):
            return (cpu.r[j] >> 8) & 0xFF

        def s(cpu, ins, v):
            r = cpu.r
            r[j] = (r[j] & 0xFFFF00FF) | ((v & 0xFF) << 8)
    return g, s, s, 1


REG = {1: [_reg8(i) for i in range(8)], 2: [_reg16(i) for i in range(8)],
       4: [_reg32(i) for i in range(8)]}


def reg_access(w: int, i: int):
    if w not in REG:
        return (None, None, None, w)
    return REG[w][i]


def reg_get(cpu, w: int, i: int) -> int:
    return REG[w][i][0](cpu, None)


def reg_set(cpu, w: int, i: int, v: int) -> None:
    REG[w][i][1](cpu, None, v)


def _mem(w):
    def g(cpu, ins):
        a = cpu.ea = ins.eaf(cpu, ins)
        return cpu.rd(ins.seg, a, w)

    def s(cpu, ins, v):
        cpu.wr(ins.seg, ins.eaf(cpu, ins), w, v)

    def wb(cpu, ins, v):
        cpu.wr(ins.seg, cpu.ea, w, v)
    return g, s, wb, w


MEM = {w: _mem(w) for w in (1, 2, 4, 8)}


def mem_access(w: int):
    return MEM[w] if w in MEM else (None, None, None, w)


def _seg(i):
    def g(cpu, ins):
        return cpu.segs[i].selector

    def s(cpu, ins, v):
        from ringvisor.cpu.semantics.segments import load_seg
        load_seg(cpu, i, v & 0xFFFF)
    return g, s, s, 2


SEG = [_seg(i) for i in range(6)]


def seg_access(i: int):
    return SEG[i]
