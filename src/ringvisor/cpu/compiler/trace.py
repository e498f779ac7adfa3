"""Trace discovery for the block compiler.

A trace is the sequence of guest instructions execution reaches from one
EIP as far as it is known without running it, inside one 4 KiB page:
fall-through, direct JMP and CALL followed to their targets, a RET after a
followed CALL continuing (guarded) after that CALL, and conditional
branches passed on their fall-through side. Each step has two flows: the
branch side (`other`) and the continuation (`cont`), each one of

    (NEXT,)        the next step of the trace
    (BACK, k)      step k, already in the trace (a loop)
    (FWD, m)       a later step m (a skipped section or a loop exit)
    (EXIT, eip)    leave the trace at a known EIP
    (DYN,)         leave at an EIP computed at run time

`structure()` (structure.py) then nests loops and skips.
"""
from __future__ import annotations

from ringvisor.cpu.core import CS, CpuFault
from ringvisor.cpu.isa.opcodes import ENDS_BLOCK

MAX_STEPS = 64
NEXT, BACK, FWD, EXIT, DYN = "next", "back", "fwd", "exit", "dyn"
M32 = 0xFFFFFFFF
_ENDS = int(ENDS_BLOCK)
CONDITIONAL = {"Jcc", "LOOP", "LOOPZ", "LOOPNZ", "JCXZ"}


class Step:
    __slots__ = ("index", "ins", "eip", "nxt", "kind", "target", "other", "cont", "expect")

    def __init__(self, index, ins, eip, nxt, kind):
        self.index, self.ins, self.eip, self.nxt, self.kind = index, ins, eip, nxt, kind
        self.target = None            # branch target EIP (jcc, jmp, call)
        self.other = None             # flow of the taken side of a conditional branch
        self.cont = (NEXT,)
        self.expect = None            # ret: the return address a followed CALL pushed

    def __repr__(self) -> str:
        return f"<Step {self.index} {self.eip:#x} {self.kind} {self.ins!r} {self.other} {self.cont}>"


def classify(ins, nxt: int, limit: int):
    """(kind, target): jcc, jmp, call, ret, ijmp, icall (inlined control
    transfer), end (any other block end: runs its handler, trace stops),
    op (everything else)."""
    if ins.ud or ins.row is None or ins.row.handler is None:
        return "end", None
    if ins.lock:
        return ("end" if int(ins.flags) & _ENDS else "op"), None
    row = ins.row
    m = row.family if row.family == "Jcc" else row.mnemonic
    kind0 = row.operands[0].kind if row.operands else ""
    if m in CONDITIONAL or (m in ("JMP", "CALL") and kind0 == "J"):
        t = (nxt + ins.imm) & (0xFFFF if ins.osz == 2 else M32)
        if t > limit:
            return "end", None            # the handler raises #GP when the branch is taken
        return ("jcc" if m in CONDITIONAL else m.lower()), t
    if m == "RET":
        return "ret", None
    if m in ("JMP", "CALL") and kind0 == "E":
        return "i" + m.lower(), None
    if int(ins.flags) & _ENDS:
        return "end", None
    return "op", None


def is_pause(ins) -> bool:
    """F3 90: PAUSE (a NOP with a REP prefix)."""
    return ins.rep == 3 and ins.row is not None and ins.row.mnemonic == "NOP"


def discover(cpu, start: int) -> list[Step]:
    """The trace from CS:start (empty if its first instruction cannot be
    decoded: the interpreter then raises the fault)."""
    sbase, limit = cpu.sbase[CS], cpu.shi[CS]
    page = ((sbase + start) & M32) >> 12
    imask = M32 if cpu.code32 else 0xFFFF
    steps: list[Step] = []
    seen: dict[int, int] = {}
    calls: list[int] = []
    eip = start
    prev = None
    while True:
        if eip in seen:
            prev.cont = (BACK, seen[eip])
            break
        lin = (sbase + eip) & M32
        ins = None
        if lin >> 12 == page and len(steps) < MAX_STEPS:
            try:
                ins = cpu.decode_at(eip)
            except CpuFault:
                ins = None
            if ins is not None and (lin & 0xFFF) + ins.length > 0x1000:
                ins = None
        if ins is None:
            if prev is not None:
                prev.cont = (EXIT, eip)
            break
        nxt = (eip + ins.length) & imask
        kind, target = classify(ins, nxt, limit)
        if is_pause(ins) and (cpu.pause_yields or cpu.vmx is not None):
            kind = "end"                    # the handler yields, or exits to the VMM
        s = Step(len(steps), ins, eip, nxt, kind)
        s.target = target
        steps.append(s)
        seen[eip] = s.index
        prev = s
        if kind == "jcc":
            s.other = (BACK, seen[target]) if target in seen else (EXIT, target)
            eip = nxt
        elif kind == "jmp":
            eip = target
        elif kind == "call":
            calls.append(nxt)
            eip = target
        elif kind == "ret" and calls:
            s.expect = calls.pop()
            eip = s.expect
        elif kind == "op":
            eip = nxt
        else:                               # ret without a known caller, ijmp, icall, end
            s.cont = (DYN,)
            break
    # A branch to a later step of the trace is a forward edge.
    for s in steps:
        if s.other and s.other[0] == EXIT and s.other[1] in seen and seen[s.other[1]] > s.index:
            s.other = (FWD, seen[s.other[1]])
    return steps
