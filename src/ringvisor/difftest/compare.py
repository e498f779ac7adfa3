"""Compare two outcomes of one program, and describe a divergence so that a
human can read it and a regression test can be written from it."""
from __future__ import annotations

from ringvisor.difftest.program import Case, Program
from ringvisor.difftest.world import GPR_ORDER, Outcome

SELECTORS = ("cs", "ss", "ds", "es", "fs", "gs")


def differences(a: Outcome, b: Outcome, program: Program) -> list[str]:
    """Every architectural difference between `a` and `b`, EFLAGS compared
    with the flags left undefined at that point masked."""
    out = []
    for name in ("event", "vector", "error_code", "eip"):
        va, vb = getattr(a, name), getattr(b, name)
        if va != vb:
            out.append(f"{name}: {_fmt(va)} != {_fmt(vb)}")
    if a.detail or b.detail:
        out.append(f"detail: {a.detail or '-'} | {b.detail or '-'}")
    if a.event != b.event and (a.detail or b.detail):
        return out
    mask = program.undefined(a.eip, a.event == "end")
    if (a.eflags ^ b.eflags) & ~mask & 0xFFFFFFFF:
        out.append(f"eflags: {a.eflags:#x} != {b.eflags:#x} (undefined here: {mask:#x})")
    for name, va, vb in zip(GPR_ORDER, a.regs, b.regs):
        if va != vb:
            out.append(f"{name}: {va:#x} != {vb:#x}")
    for name, va, vb in zip(SELECTORS, a.selectors, b.selectors):
        if va != vb:
            out.append(f"{name}: {va:#x} != {vb:#x}")
    for name, va, vb in zip(("ds cache", "es cache", "fs cache", "gs cache"), a.caches, b.caches):
        if va != vb:
            out.append(f"{name}: {_fmt_cache(va)} != {_fmt_cache(vb)}")
    for name in ("data", "stack", "gdt"):
        da, db = getattr(a, name), getattr(b, name)
        if da != db:
            diff = [i for i in range(min(len(da), len(db))) if da[i] != db[i]]
            i = diff[0] if diff else 0
            out.append(f"{name}: {len(diff)} bytes differ, first at +{i:#x}: "
                       f"{da[i:i + 8].hex()} != {db[i:i + 8].hex()}")
    return out


def _fmt_cache(c: tuple) -> str:
    return "(" + ", ".join(f"{x:#x}" if isinstance(x, int) and not isinstance(x, bool) else str(x)
                           for x in c) + ")"


def _fmt(v) -> str:
    return f"{v:#x}" if isinstance(v, int) else str(v)


def listing(program: Program) -> str:
    """The program as assembly (iced-x86: a disassembler independent of the
    soft CPU's table)."""
    from iced_x86 import Decoder, Formatter, FormatterSyntax
    fmt = Formatter(FormatterSyntax.INTEL)
    lines = []
    for eip, insn in program.listing:
        text = " ; ".join(fmt.format(i) for i in Decoder(32, insn.code, ip=eip))
        lines.append(f"  {eip:08x}  {insn.code.hex():<24} {text}")
    return "\n".join(lines)


def describe(case: Case, program: Program, names: tuple[str, str], diffs: list[str]) -> str:
    regs = " ".join(f"{k}={v:#x}" for k, v in case.regs.items())
    return (f"divergence at CPL {case.cpl} ({names[0]} vs {names[1]})\n"
            f"start: eflags={case.eflags:#x} {regs} seed={case.seed:#x}\n"
            f"code: {program.code[:program.end_eip - 0x10000].hex()}\n{listing(program)}\n  " +
            "\n  ".join(diffs))
