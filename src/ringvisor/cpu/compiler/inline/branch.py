"""Inline near control transfer (SDM vol. 1 6.3, 7.3.8): conditions of
Jcc/LOOP/LOOPcc/JCXZ, CALL (push), RET (pop, CS limit check, the guard of a
predicted return), indirect JMP/CALL through a register or memory. Where
control goes next is the trace's business (codegen.py); this only emits the
instruction's own work. Semantics follow control.py."""
from __future__ import annotations

from ringvisor.cpu.compiler.inline.templates import address, get, pop, push, smc_exit, target_check
from ringvisor.cpu.compiler.lazyflags import ZF


def emit_control(g, s):
    """Emit step s; for conditional branches return the condition."""
    ins = s.ins
    kind = s.kind
    if kind == "jcc":
        return _condition(g, s)
    if kind == "jmp":
        return None
    if kind == "call":
        push(g, s, str(s.nxt), ins.osz)
        smc_exit(g, s, s.target)
        return None
    if kind == "ret":
        extra = ins.imm & 0xFFFF if ins.row.operands else 0
        move = pop(g, ins.osz, "v", extra)
        target_check(g, ins.osz)
        g.emit(move)
        if s.expect is not None:
            g.block(f"if v != {s.expect}:", lambda: g.exit("v", g.off + 1))
        return None
    # JMP/CALL Ev: the target is checked before anything is pushed.
    if ins.mem:
        address(g, ins)
    v = get(g, ins, 0)
    if v != "v":
        g.emit(f"v = {v}")
    target_check(g, ins.w)
    if kind == "icall":
        push(g, s, str(s.nxt), ins.osz)
        smc_exit(g, s, "v")
    return None


def _condition(g, s) -> str:
    ins = s.ins
    row = ins.row
    if row.family == "Jcc":
        return g.state.cond(row.cc)
    m = row.mnemonic
    if m == "JCXZ":
        return f"not ecx & {0xFFFF if ins.asz == 2 else 0xFFFFFFFF:#x}"
    if ins.asz == 2:
        g.emit(g.rset(2, 1, "(ecx - 1) & 0xFFFF"))
        c = "ecx & 0xFFFF"
    else:
        g.emit(g.rset(4, 1, "(ecx - 1) & 0xFFFFFFFF"))
        c = "ecx"
    if m == "LOOP":
        return c
    z = g.state.flag(ZF)
    return f"({c}) and {z}" if m == "LOOPZ" else f"({c}) and not {z}"
