"""Near control transfer (SDM vol. 1 6.3, 7.3.8): JMP, Jcc, CALL, RET,
LOOP/LOOPcc, JCXZ/JECXZ; the far forms call into transfer.py."""
from __future__ import annotations

from ringvisor.cpu.core import CS, ZF, gp
from ringvisor.cpu.flags import cond
from ringvisor.cpu.semantics import transfer
from ringvisor.cpu.semantics.registry import sem


def _target(cpu, ins, t):
    t &= 0xFFFF if ins.osz == 2 else 0xFFFFFFFF
    if t > cpu.shi[CS]:
        raise gp(0)
    return t


def jump(cpu, ins, t):
    cpu.eip = _target(cpu, ins, t)


@sem("Jcc")
def jcc(cpu, ins):
    if cond(cpu.flags, ins.row.cc):
        cpu.eip = _target(cpu, ins, cpu.eip + ins.imm)


@sem("JMP")
def jmp(cpu, ins):
    kind = ins.row.operands[0].kind
    if kind == "J":
        cpu.eip = _target(cpu, ins, cpu.eip + ins.imm)
    elif kind == "E":
        cpu.eip = _target(cpu, ins, ins.g0(cpu, ins))
    elif kind == "A":
        transfer.far_jmp(cpu, ins.imm2, ins.imm, ins.osz)
    else:                                   # JMP Mp
        sel, off = _far_pointer(cpu, ins)
        transfer.far_jmp(cpu, sel, off, ins.osz)


@sem("CALL")
def call(cpu, ins):
    kind = ins.row.operands[0].kind
    if kind == "J":
        t = _target(cpu, ins, cpu.eip + ins.imm)
        cpu.push(cpu.eip, ins.osz)
        cpu.eip = t
    elif kind == "E":
        t = _target(cpu, ins, ins.g0(cpu, ins))
        cpu.push(cpu.eip, ins.osz)
        cpu.eip = t
    elif kind == "A":
        transfer.far_call(cpu, ins.imm2, ins.imm, ins.osz)
    else:
        sel, off = _far_pointer(cpu, ins)
        transfer.far_call(cpu, sel, off, ins.osz)


def _far_pointer(cpu, ins):
    if not ins.mem:
        from ringvisor.cpu.core import ud
        raise ud()
    a = ins.eaf(cpu, ins)
    off = cpu.rd(ins.seg, a, ins.osz)
    sel = cpu.rd(ins.seg, (a + ins.osz) & (0xFFFF if ins.asz == 2 else 0xFFFFFFFF), 2)
    return sel, off


@sem("RET")
def ret(cpu, ins):
    r = cpu.r
    sp = r[4] if cpu.stack32 else r[4] & 0xFFFF
    from ringvisor.cpu.core import SS
    t = cpu.rd(SS, sp, ins.osz)
    t = _target(cpu, ins, t)
    cpu.sp_add(ins.osz + (ins.imm & 0xFFFF if ins.row.operands else 0))
    cpu.eip = t


@sem("RETF")
def retf(cpu, ins):
    transfer.far_ret(cpu, ins.osz, ins.imm & 0xFFFF if ins.row.operands else 0)


def _count(cpu, ins):
    r = cpu.r
    if ins.asz == 2:
        c = (r[1] - 1) & 0xFFFF
        r[1] = (r[1] & 0xFFFF0000) | c
    else:
        c = r[1] = (r[1] - 1) & 0xFFFFFFFF
    return c


@sem("LOOP")
def loop(cpu, ins):
    if _count(cpu, ins):
        cpu.eip = _target(cpu, ins, cpu.eip + ins.imm)


@sem("LOOPZ")
def loopz(cpu, ins):
    if _count(cpu, ins) and cpu.flags & ZF:
        cpu.eip = _target(cpu, ins, cpu.eip + ins.imm)


@sem("LOOPNZ")
def loopnz(cpu, ins):
    if _count(cpu, ins) and not cpu.flags & ZF:
        cpu.eip = _target(cpu, ins, cpu.eip + ins.imm)


@sem("JCXZ")
def jcxz(cpu, ins):
    c = cpu.r[1] if ins.asz == 4 else cpu.r[1] & 0xFFFF
    if c == 0:
        cpu.eip = _target(cpu, ins, cpu.eip + ins.imm)
