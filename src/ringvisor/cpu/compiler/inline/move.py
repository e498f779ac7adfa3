"""Inline templates: data movement and the stack (SDM vol. 1 7.3.1), SETcc
and CMOVcc, flag control (CLC STC CMC CLD STD LAHF SAHF), conversions and
BSWAP. Semantics follow datamove.py/logic.py/arith.py exactly."""
from __future__ import annotations

from ringvisor.cpu.compiler.codegen import REGS
from ringvisor.cpu.compiler.inline.templates import (MASK, SIGN, address, ea_expr, full_register, get, is_mem, load,
                                  operand_ok, pop, push, put, smc_exit, template)
from ringvisor.cpu.compiler.lazyflags import FlagState
from ringvisor.cpu.core import SS

MOV_DST = ("E", "G", "Z", "reg", "O")
MOV_SRC = ("E", "G", "Z", "reg", "I", "O")


def _mov_ok(ins) -> bool:
    ops = ins.row.operands
    return (len(ops) == 2 and ops[0].kind in MOV_DST and ops[1].kind in MOV_SRC
            and operand_ok(ins, 0) and operand_ok(ins, 1))


@template("MOV", "MOVZX", can=_mov_ok)
def mov(g, s) -> None:
    ins = s.ins
    if ins.mem:
        address(g, ins)
    reg = full_register(ins, 0)
    if reg is not None and is_mem(ins, 1) and ins.w1 == 4:
        get(g, ins, 1, REGS[reg])
        return
    put(g, ins, 0, get(g, ins, 1))
    if is_mem(ins, 0):
        smc_exit(g, s)


@template("MOVSX", can=_mov_ok)
def movsx(g, s) -> None:
    ins = s.ins
    if ins.mem:
        address(g, ins)
    v = get(g, ins, 1)
    sign = SIGN[ins.w1]
    put(g, ins, 0, f"(({v} ^ {sign:#x}) - {sign:#x}) & {MASK[ins.w]:#x}")


@template("LEA", can=lambda ins: ins.mem and ins.osz in MASK)
def lea(g, s) -> None:
    ins = s.ins
    e = ea_expr(ins)
    put(g, ins, 0, e if ins.osz == ins.asz == 4 else f"({e}) & {MASK[ins.osz]:#x}")


@template("XCHG", can=lambda ins: operand_ok(ins, 0) and operand_ok(ins, 1))
def xchg(g, s) -> None:
    ins = s.ins
    if ins.mem:                       # XCHG Ev,Gv: read, write the register, then set it
        address(g, ins)
        a = get(g, ins, 0)
        put(g, ins, 0, get(g, ins, 1))
        put(g, ins, 1, a)
        smc_exit(g, s)
        return
    g.emit(f"y = {get(g, ins, 0)}")
    put(g, ins, 0, get(g, ins, 1))
    put(g, ins, 1, "y")


@template("NOP")
def nop(g, s) -> None:
    pass


def _push_ok(ins) -> bool:
    return ins.row.operands[0].kind in ("Z", "I", "E") and ins.osz in (2, 4) and operand_ok(ins, 0)


@template("PUSH", can=_push_ok, stack=True)
def push_(g, s) -> None:
    ins = s.ins
    if ins.mem:
        address(g, ins)
    v = get(g, ins, 0)
    push(g, s, v, ins.osz)
    smc_exit(g, s)


def _pop_ok(ins) -> bool:
    k = ins.row.operands[0].kind
    return (k == "Z" or (k == "E" and not ins.mem)) and ins.osz in (2, 4)


@template("POP", can=_pop_ok, stack=True)
def pop_(g, s) -> None:
    ins = s.ins
    g.emit(pop(g, ins.osz))
    put(g, ins, 0, "v")              # after ESP moves: POP ESP loads ESP last


@template("LEAVE", can=lambda ins: ins.osz in (2, 4), stack=True)
def leave(g, s) -> None:
    ins = s.ins
    w = ins.osz
    if g.stack32:
        load(g, SS, "v", w, "ebp")
        g.emit(f"esp = (ebp + {w}) & 0xFFFFFFFF")
    else:
        g.emit("x = ebp & 0xFFFF")
        load(g, SS, "v", w, "x")
        g.emit(f"esp = (esp & 0xFFFF0000) | ((x + {w}) & 0xFFFF)")
    g.emit(g.rset(w, 5, "v"))


@template("SETcc", reads=True, can=lambda ins: operand_ok(ins, 0))
def setcc(g, s) -> None:
    ins = s.ins
    if ins.mem:
        address(g, ins)
    put(g, ins, 0, f"(1 if {g.state.cond(ins.row.cc)} else 0)")
    if ins.mem:
        smc_exit(g, s)


@template("CMOVcc", reads=True, can=lambda ins: operand_ok(ins, 0) and operand_ok(ins, 1))
def cmovcc(g, s) -> None:
    ins = s.ins
    if ins.mem:
        address(g, ins)
    v = get(g, ins, 1)                # read (and may fault) either way
    g.block(f"if {g.state.cond(ins.row.cc)}:", lambda: put(g, ins, 0, v))


# Flag control: materialise, change, and go on from `f`.
FLAG_OPS = {"CLC": "f = {m} & 0x3FFFFE", "STC": "f = {m} | 1", "CMC": "f = {m} ^ 1",
            "CLD": "f = {m} & 0x3FFBFF", "STD": "f = {m} | 0x400",
            "SAHF": "f = ({m} & 0x3FFF2A) | ((eax >> 8) & 0xD5)"}


@template(*FLAG_OPS, reads=True)
def flag_op(g, s) -> None:
    g.emit(FLAG_OPS[s.ins.row.mnemonic].format(m=g.state.materialize()))
    g.state = FlagState()


@template("LAHF", reads=True)
def lahf(g, s) -> None:
    g.emit(g.rset(4, 0, f"(eax & 0xFFFF00FF) | ((({g.state.materialize()} & 0xD5) | 2) << 8)"))


@template("CBW", "CWD")
def convert(g, s) -> None:
    ins = s.ins
    if ins.row.mnemonic == "CBW":
        if ins.osz == 2:
            g.emit(g.rset(2, 0, "(((eax & 0xFF) ^ 0x80) - 0x80) & 0xFFFF"))
        else:
            g.emit(g.rset(4, 0, "(((eax & 0xFFFF) ^ 0x8000) - 0x8000) & 0xFFFFFFFF"))
    elif ins.osz == 2:
        g.emit(g.rset(2, 2, "0xFFFF if eax & 0x8000 else 0"))
    else:
        g.emit(g.rset(4, 2, "0xFFFFFFFF if eax & 0x80000000 else 0"))


@template("BSWAP", can=lambda ins: ins.w == 4)
def bswap(g, s) -> None:
    r = get(g, s.ins, 0)
    put(g, s.ins, 0, f"(({r} & 0xFF) << 24) | (({r} & 0xFF00) << 8) | (({r} >> 8) & 0xFF00) | ({r} >> 24)")
