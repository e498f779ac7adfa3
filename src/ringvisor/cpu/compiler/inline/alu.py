"""Inline templates: binary arithmetic and logic, INC/DEC/NEG/NOT, shifts
and rotates by a constant, IMUL into a register (SDM vol. 1 7.3.2-7.3.6).
Semantics follow arith.py/shift.py exactly (flag results included); the
flags are left to lazyflags.Producer unless dead."""
from __future__ import annotations

from ringvisor.cpu.compiler.inline.templates import (MASK, SIGN, address, full_register, get, is_mem, operand_ok, put,
                                  smc_exit, template)
from ringvisor.cpu.compiler.lazyflags import CF, STATUS, Producer

OPS = {"ADD": "+", "ADC": "+", "SUB": "-", "SBB": "-", "CMP": "-",
       "AND": "&", "TEST": "&", "OR": "|", "XOR": "^"}


def _binary_ok(ins) -> bool:
    ops = ins.row.operands
    return (len(ops) == 2 and ops[0].kind != "I" and operand_ok(ins, 0) and operand_ok(ins, 1)
            and not (is_mem(ins, 0) and is_mem(ins, 1)))


def _literal(e: str) -> bool:
    return e.isdigit()


@template("ADD", "SUB", "CMP", "AND", "OR", "XOR", "TEST", kills=True, can=_binary_ok)
@template("ADC", "SBB", reads=True, can=_binary_ok)
def binary(g, s) -> None:
    ins, k = s.ins, s.index
    m = ins.row.mnemonic
    w = ins.w
    mask = MASK[w]
    op = OPS[m]
    if ins.mem:
        address(g, ins)
    a = get(g, ins, 0)
    b = get(g, ins, 1)
    writes = m not in ("CMP", "TEST")
    arith = op in "+-"
    carry = f" {op} {g.state.flag(CF)}" if m in ("ADC", "SBB") else ""
    mem_dst = writes and is_mem(ins, 0)
    if not g.live_after(s):
        if writes:
            put(g, ins, 0, f"({a} {op} {b}{carry}) & {mask:#x}" if arith else f"{a} {op} {b}")
            if mem_dst:
                smc_exit(g, s)
        return
    t = f"t{k}"
    if arith:
        ak, bk = f"a{k}", (b if _literal(b) else f"b{k}")
        if mem_dst:               # the write may fault: temporaries after it
            g.emit(f"y = {a} {op} {b}{carry}")
            put(g, ins, 0, f"(y & {mask:#x})")
            g.emit(f"{ak} = {a}" + ("" if bk == b else f"; {bk} = {b}") + f"; {t} = y")
        else:
            g.emit(f"{ak} = {a}" + ("" if bk == b else f"; {bk} = {b}"), f"{t} = {ak} {op} {bk}{carry}")
            if writes:
                put(g, ins, 0, f"{t} & {mask:#x}")
        p = Producer("ADD" if op == "+" else "SUB", w, a=ak, b=bk, t=t, borrow=bool(carry))
    else:
        if mem_dst:
            g.emit(f"y = {a} {op} {b}")
            put(g, ins, 0, "y")
            g.emit(f"{t} = y")
        elif writes and full_register(ins, 0) is not None:
            g.emit(f"{get(g, ins, 0)} = {t} = {a} {op} {b}")
        else:
            g.emit(f"{t} = {a} {op} {b}")
            if writes:
                put(g, ins, 0, t)
        p = Producer("LOGIC", w, t=t)
    g.state = g.state.push(p)
    if mem_dst:
        smc_exit(g, s)


def _unary_ok(ins) -> bool:
    return len(ins.row.operands) == 1 and operand_ok(ins, 0)


@template("INC", "DEC", "NEG", "NOT", can=_unary_ok, kills=lambda ins: ins.row.mnemonic == "NEG")
def unary(g, s) -> None:
    ins, k = s.ins, s.index
    m = ins.row.mnemonic
    w = ins.w
    mask = MASK[w]
    mem = is_mem(ins, 0)
    if mem:
        address(g, ins)
    a = get(g, ins, 0)
    expr = {"INC": f"{a} + 1", "DEC": f"{a} - 1", "NEG": f"-{a}", "NOT": f"{a} ^ {mask:#x}"}[m]
    if m == "NOT" or not g.live_after(s):
        put(g, ins, 0, f"({expr}) & {mask:#x}" if m != "NOT" else expr)
    else:
        t, ak = f"t{k}", f"a{k}"
        if mem:
            g.emit(f"y = {expr}")
            put(g, ins, 0, f"(y & {mask:#x})")
            g.emit(f"{ak} = {a}; {t} = y" if m == "NEG" else f"{t} = y")
        elif m == "NEG":
            g.emit(f"{ak} = {a}", f"{t} = -{ak}")
            put(g, ins, 0, f"{t} & {mask:#x}")
        else:
            g.emit(f"{t} = {expr}")
            put(g, ins, 0, f"{t} & {mask:#x}")
        if m == "NEG":
            p = Producer("SUB", w, a="0", b=ak, t=t)
        else:
            # The operand is the result minus/plus one: no temporary for it.
            a_expr = f"({t} - 1)" if m == "INC" else f"({t} + 1)"
            p = Producer("ADD" if m == "INC" else "SUB", w, mask=STATUS & ~CF, a=a_expr, b="1", t=t)
        g.state = g.state.push(p)
    if mem:
        smc_exit(g, s)


SHIFTS = ("SHL", "SAL", "SHR", "SAR", "ROL", "ROR")


def _count(ins) -> int:
    return (ins.imm if ins.row.operands[1].kind == "I" else 1) & 0x1F


def _shift_ok(ins) -> bool:
    return ins.row.operands[1].kind in ("I", "const") and operand_ok(ins, 0)


def _shift_kills(ins) -> bool:
    return _count(ins) != 0 and ins.row.mnemonic in ("SHL", "SAL", "SHR", "SAR")


@template(*SHIFTS, can=_shift_ok, kills=_shift_kills)
def shift(g, s) -> None:
    ins, k = s.ins, s.index
    m = ins.row.mnemonic
    w = ins.w
    mask, sign = MASK[w], SIGN[w]
    c = _count(ins)
    mem = is_mem(ins, 0)
    if mem:
        address(g, ins)
    a = get(g, ins, 0)
    if c == 0:
        if mem:                       # the write cycle still happens
            put(g, ins, 0, a)
            smc_exit(g, s)
        return
    if not g.live_after(s):
        put(g, ins, 0, _shift_result(m, a, c, w))
        if mem:
            smc_exit(g, s)
        return
    # Result into `t`, with the source (or signed source) in `v` where the flags need it;
    # into scratch locals first when a memory write may still fault.
    tv, vv = ("y", "z") if mem else (f"t{k}", f"v{k}")
    if m in ("SHL", "SAL"):
        lines, res = [f"{tv} = {a} << {c}"], f"{tv} & {mask:#x}"
        p = Producer("SHL", w, t=f"t{k}")
    elif m == "SHR":
        lines, res = [f"{vv} = {a}", f"{tv} = {vv} >> {c}"], tv
        p = Producer("SHR", w, v=f"v{k}", t=f"t{k}", c=c)
    elif m == "SAR":
        lines, res = [f"{vv} = ({a} ^ {sign:#x}) - {sign:#x}", f"{tv} = ({vv} >> {c}) & {mask:#x}"], tv
        p = Producer("SAR", w, v=f"v{k}", t=f"t{k}", c=c)
    else:
        lines, res = [f"{tv} = {_shift_result(m, a, c, w)}"], tv
        p = Producer(m, w, mask=0x801, t=f"t{k}")
    g.emit(*lines)
    put(g, ins, 0, res)
    if mem:
        g.emit(f"t{k} = y" + (f"; v{k} = z" if m in ("SHR", "SAR") else ""))
    g.state = g.state.push(p)
    if mem:
        smc_exit(g, s)


def _shift_result(m: str, a: str, c: int, w: int) -> str:
    """The (masked) result of shifting operand expression `a` by c (1..31)."""
    mask, sign, bits = MASK[w], SIGN[w], 8 * w
    if m in ("SHL", "SAL"):
        return f"({a} << {c}) & {mask:#x}"
    if m == "SHR":
        return f"{a} >> {c}"
    if m == "SAR":
        return f"((({a} ^ {sign:#x}) - {sign:#x}) >> {c}) & {mask:#x}"
    r = c % bits
    if r == 0:
        return a
    if m == "ROL":
        return f"(({a} << {r}) | ({a} >> {bits - r})) & {mask:#x}"
    return f"(({a} >> {r}) | ({a} << {bits - r})) & {mask:#x}"


def _imul_ok(ins) -> bool:
    n = len(ins.row.operands)
    return n in (2, 3) and ins.w in (2, 4) and operand_ok(ins, 0) and operand_ok(ins, 1)


@template("IMUL", can=_imul_ok, kills=lambda ins: len(ins.row.operands) > 1)
def imul(g, s) -> None:
    ins, k = s.ins, s.index
    w = ins.w
    mask, sign = MASK[w], SIGN[w]
    if ins.mem:
        address(g, ins)
    if len(ins.row.operands) == 2:
        x, y = get(g, ins, 0), get(g, ins, 1)
        sy = f"(({y} ^ {sign:#x}) - {sign:#x})"
    else:
        x = get(g, ins, 1)
        imm = ins.imm & mask
        sy = str(imm - 2 * sign if imm & sign else imm)
    prod = f"(({x} ^ {sign:#x}) - {sign:#x}) * {sy}"
    if not g.live_after(s):
        put(g, ins, 0, f"({prod}) & {mask:#x}")
        return
    g.emit(f"p{k} = {prod}", f"t{k} = p{k} & {mask:#x}")
    put(g, ins, 0, f"t{k}")
    g.state = g.state.push(Producer("MUL", w, v=f"p{k}", t=f"t{k}"))
