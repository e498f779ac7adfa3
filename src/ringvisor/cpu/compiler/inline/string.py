"""Inline templates: string instructions without a REP prefix (SDM vol. 1
7.3.9), one element each, as semantics/string.py does them: read from
DS:(E)SI (or the segment override), write or compare at ES:(E)DI, the index
registers moved by the width, downwards when DF=1. DF is read from the
local `f`, which always holds the EFLAGS bits no producer owns. Repeated
forms call their handler (bulk runs, interrupts between iterations)."""
from __future__ import annotations

from ringvisor.cpu.compiler.codegen import REGS
from ringvisor.cpu.compiler.inline.templates import MASK, load, smc_exit, store, template
from ringvisor.cpu.compiler.lazyflags import Producer
from ringvisor.cpu.core import DS, ES

SI, DI = 6, 7


def _ok(ins) -> bool:
    return not ins.rep and not ins.lock and (ins.w if ins.w else ins.osz) in MASK and ins.asz in (2, 4)


def _width(ins) -> int:
    return 1 if ins.row.mnemonic.endswith("B") else ins.osz


def _offset(g, ins, i: int, local: str) -> str:
    """The offset in index register i, as a local usable as an address."""
    if ins.asz == 4:
        return REGS[i]
    g.emit(f"{local} = {REGS[i]} & 0xFFFF")
    return local


def _advance(g, ins, w: int, *regs: int) -> None:
    step = f"(-{w} if f & 0x400 else {w})"
    for i in regs:
        r = REGS[i]
        if ins.asz == 4:
            g.emit(f"{r} = ({r} + {step}) & 0xFFFFFFFF")
        else:
            g.emit(f"{r} = ({r} & 0xFFFF0000) | (({r} + {step}) & 0xFFFF)")


def _source(ins) -> int:
    return ins.seg if ins.seg >= 0 else DS


@template("MOVS", "MOVSB", memory=True, can=_ok)
def movs(g, s) -> None:
    ins, w = s.ins, _width(s.ins)
    load(g, _source(ins), "v", w, _offset(g, ins, SI, "xs"))
    store(g, ES, w, "v", _offset(g, ins, DI, "xd"))
    _advance(g, ins, w, SI, DI)
    smc_exit(g, s)


@template("STOS", "STOSB", memory=True, can=_ok)
def stos(g, s) -> None:
    ins, w = s.ins, _width(s.ins)
    store(g, ES, w, g.rget(w, 0), _offset(g, ins, DI, "xd"))
    _advance(g, ins, w, DI)
    smc_exit(g, s)


@template("LODS", "LODSB", memory=True, can=_ok)
def lods(g, s) -> None:
    ins, w = s.ins, _width(s.ins)
    load(g, _source(ins), "v", w, _offset(g, ins, SI, "xs"))
    g.emit(g.rset(w, 0, "v"))
    _advance(g, ins, w, SI)


def _compare(g, s, a: str, b: str, w: int) -> None:
    """Flags of a - b (CMP), lazily, unless nothing reads them."""
    if g.live_after(s):
        k = s.index
        g.emit(f"a{k} = {a}; b{k} = {b}; t{k} = a{k} - b{k}")
        g.state = g.state.push(Producer("SUB", w, a=f"a{k}", b=f"b{k}", t=f"t{k}"))


@template("SCAS", "SCASB", memory=True, kills=True, can=_ok)
def scas(g, s) -> None:
    ins, w = s.ins, _width(s.ins)
    load(g, ES, "v", w, _offset(g, ins, DI, "xd"))
    _compare(g, s, g.rget(w, 0), "v", w)
    _advance(g, ins, w, DI)


@template("CMPS", "CMPSB", memory=True, kills=True, can=_ok)
def cmps(g, s) -> None:
    ins, w = s.ins, _width(s.ins)
    load(g, _source(ins), "v", w, _offset(g, ins, SI, "xs"))
    load(g, ES, "y", w, _offset(g, ins, DI, "xd"))
    _compare(g, s, "v", "y", w)
    _advance(g, ins, w, SI, DI)
