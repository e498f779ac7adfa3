"""Inline instruction templates: the registry and the operand helpers the
templates (alu.py, move.py, branch.py) are written with.

A template turns one decoded instruction into Python statements over the
register locals (codegen.py). It is registered by table family
(`@template("ADD", "SUB", …)`) with its flag effects, which the compiler's
liveness scan reads: `reads` (it reads flags), `kills` (it sets every
status flag without reading any, so earlier flag results are dead), and
whether it touches the stack. Memory operands make an instruction a
possible fault point. `can(ins)` says whether the template handles this
form (else the table handler is called, as the interpreter does).

Each template must do everything that can fault before it assigns any
register local (the fault path relies on it), and set a producer's
temporaries only after its last memory write.
"""
from __future__ import annotations

from ringvisor.cpu.compiler import memcode
from ringvisor.cpu.core import SS
from ringvisor.cpu.semantics.protection import CHECKED

MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}
REG_NAMES = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
SIGN = {1: 0x80, 2: 0x8000, 4: 0x80000000}
_CHECKED = int(CHECKED)          # IntFlag's & is a Python-level call
CONTROL = ("jcc", "jmp", "call", "ret", "ijmp", "icall")
REG_KINDS = ("E", "G", "Z", "reg")


class Template:
    __slots__ = ("emit", "can", "reads", "kills", "stack", "memory")


TEMPLATES: dict[str, Template] = {}


def template(*families, reads=False, kills=False, stack=False, memory=False, can=None):
    """`memory`: the instruction reaches memory without a memory operand
    (string instructions), so it may fault like one."""
    def deco(fn):
        t = Template()
        t.emit, t.can, t.reads, t.kills, t.stack = fn, can or (lambda ins: True), reads, kills, stack
        t.memory = memory
        for f in families:
            TEMPLATES[f] = t
        return fn
    return deco


def key(s) -> str:
    return s.ins.row.family if s.ins.row else ""


def inlinable(s):
    """The template for step s, or None (handler call)."""
    ins = s.ins
    if ins.ud or ins.row is None or ins.lock or int(ins.flags) & _CHECKED:
        return None
    t = TEMPLATES.get(key(s))
    return t if t is not None and t.can(ins) else None


def effects(g, s):
    """(reads flags, kills all status flags, may fault or exit) of step s."""
    if s.kind in CONTROL:
        return True, False, True
    t = inlinable(s) if s.kind == "op" else None
    if t is None:
        return True, False, True
    kills = t.kills(s.ins) if callable(t.kills) else t.kills
    return t.reads, kills, bool(s.ins.mem or t.stack or t.memory)


def emit(g, s) -> bool:
    """Emit step s inline if a template handles it."""
    t = inlinable(s)
    if t is None:
        return False
    t.emit(g, s)
    return True


# --- operands -----------------------------------------------------------------------------
def operand_ok(ins, which: int) -> bool:
    op = ins.row.operands[which]
    w = ins.w if which == 0 else ins.w1
    if w not in MASK:
        return False
    return op.kind in REG_KINDS or op.kind in ("I", "O", "const") or (op.kind == "M" and ins.mem)


def ea_expr(ins) -> str:
    if any(o.kind == "O" for o in ins.row.operands):
        return str(ins.disp)
    parts = [str(ins.disp)] if ins.disp else []
    if ins.base >= 0:
        parts.append(("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")[ins.base])
    if ins.index >= 0:
        r = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")[ins.index]
        parts.append(f"({r} << {ins.scale})" if ins.asz == 4 and ins.scale else r)
    if not parts:
        return "0"
    if len(parts) == 1 and ins.asz == 4 and not parts[0][0].isdigit() and "<<" not in parts[0]:
        return parts[0]                       # [reg]: already 32 bits
    return f"({' + '.join(parts)}) & {0xFFFF if ins.asz == 2 else 0xFFFFFFFF:#x}"


def is_mem(ins, which: int) -> bool:
    k = ins.row.operands[which].kind
    return (k in "EM" and ins.mem) or k == "O"


def address(g, ins) -> None:
    """Compute the memory operand's offset for the following load/store:
    a bare 32-bit register is used as it is, anything else goes to `x`."""
    e = ea_expr(ins)
    if e in REG_NAMES:
        g.addr = e
    else:
        g.emit(f"x = {e}")
        g.addr = "x"


def load(g, s: int, dst: str, w: int, addr: str | None = None) -> None:
    g.emit(*memcode.load(dst, s, addr or g.addr, w, memcode.flat(g.cpu, s, False), g.cpu.sbase[s]))


def store(g, s: int, w: int, v: str, addr: str | None = None) -> None:
    g.emit(*memcode.store(s, addr or g.addr, w, v, memcode.flat(g.cpu, s, True), g.cpu.sbase[s]))


def get(g, ins, which: int, dst: str = "v") -> str:
    """Expression for operand `which` (a memory operand is loaded into
    `dst` from address `x`, which the caller has set)."""
    op = ins.row.operands[which]
    w = ins.w if which == 0 else ins.w1
    if is_mem(ins, which):
        load(g, ins.seg, dst, w)
        return dst
    k = op.kind
    if k == "E":
        return g.rget(w, ins.rm)
    if k == "G":
        return g.rget(w, ins.reg)
    if k == "Z":
        return g.rget(w, ins.row.zreg)
    if k == "reg":
        return g.rget(w, op.reg)
    if k == "I":
        return str(ins.imm & MASK[w])
    if k == "const":
        return "1"
    raise AssertionError(k)


def full_register(ins, which: int):
    """The register number if operand `which` is a whole 32-bit register."""
    op = ins.row.operands[which]
    w = ins.w if which == 0 else ins.w1
    if w != 4 or is_mem(ins, which) or op.kind not in REG_KINDS:
        return None
    k = op.kind
    return ins.rm if k == "E" else ins.reg if k == "G" else ins.row.zreg if k == "Z" else op.reg


def target_check(g, w: int) -> None:
    """#GP(0) if the near branch target in `v` is beyond the CS limit."""
    if g.cs_limit < (0xFFFF if w == 2 else 0xFFFFFFFF):
        g.block(f"if v > {g.cs_limit}:", lambda: g.emit("raise CpuFault(13, 0)"))


def put(g, ins, which: int, v: str) -> None:
    """Write masked value `v` to operand `which` (memory at `x`)."""
    op = ins.row.operands[which]
    w = ins.w if which == 0 else ins.w1
    if is_mem(ins, which):
        store(g, ins.seg, w, v)
        return
    k = op.kind
    i = ins.rm if k == "E" else ins.reg if k == "G" else ins.row.zreg if k == "Z" else op.reg
    g.emit(g.rset(w, i, v))


def smc_exit(g, s, eip: int | str | None = None) -> None:
    """After an instruction's last write: leave if it wrote compiled code
    (at `eip`: default the next instruction; "v": the local `v`)."""
    g.leave("sm", None if eip == "v" else s.nxt if eip is None else eip, g.off + 1)


# --- the stack -------------------------------------------------------------------------
def push(g, s, value: str, w: int) -> None:
    """Push masked `value` (evaluated before ESP changes)."""
    if g.stack32:
        g.emit(f"x = (esp - {w}) & 0xFFFFFFFF")
        store(g, SS, w, value, "x")
        g.emit(g.rset(4, 4, "x"))
    else:
        g.emit(f"x = (esp - {w}) & 0xFFFF")
        store(g, SS, w, value, "x")
        g.emit("esp = (esp & 0xFFFF0000) | x")


def pop(g, w: int, dst: str = "v", extra: int = 0) -> str:
    """Load the stack top into `dst`; returns the statement that moves ESP
    (to emit after anything else that can fault)."""
    if g.stack32:
        load(g, SS, dst, w, "esp")
        return f"esp = (esp + {w + extra}) & 0xFFFFFFFF"
    g.emit("x = esp & 0xFFFF")
    load(g, SS, dst, w, "x")
    return f"esp = (esp & 0xFFFF0000) | ((x + {w + extra}) & 0xFFFF)"
