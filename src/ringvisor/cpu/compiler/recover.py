"""The CPU state at an exception inside generated code.

Generated code carries no bookkeeping for faults and rare exits: when a
line raises, the traceback says which line of which trace function it was,
the trace's `LINES` table says what that line is (codegen.py: FAULT,
HANDLER, LEAVE, SYNCED), and the function's frame still holds its locals:
registers, `ic`, and the flag producers' temporaries, from which the
line's flag state (a lazyflags.FlagState) is evaluated.
"""
from __future__ import annotations

from ringvisor.cpu.compiler.codegen import FAULT, LEAVE, REGS, SYNCED
from ringvisor.cpu.compiler.lazyflags import render

def _flags(state, env: dict, local: dict) -> int:
    cache = env.setdefault("FLAGCODE", {})
    code = cache.get(id(state))
    if code is None:
        code = cache[id(state)] = compile(render(state.materialize(), env["DYNS"]), "<flags>", "eval")
    return eval(code, env, local)


def recover(cpu, block, exc: BaseException) -> bool:
    """Put the CPU state where the raising line says it is. True if that
    was a trace exit (Leave), False if the exception goes on (a fault, with
    cur_eip/cur_esp naming the faulting instruction)."""
    tb = exc.__traceback__
    code = block.fn.__code__
    while tb is not None and tb.tb_frame.f_code is not code:
        tb = tb.tb_next
    if tb is None:
        return False
    tag = block.env["LINES"].get(tb.tb_lineno)
    if tag is None:
        return False
    kind = tag[0]
    local = tb.tb_frame.f_locals
    if kind == SYNCED:
        cpu.instructions = local["ic"] + tag[1]
        return True
    if kind not in (FAULT, LEAVE):
        return False                          # a handler raised: it left the state itself
    _, eip, off, flags = tag
    r = cpu.r
    for i, name in enumerate(REGS):
        r[i] = local[name]
    cpu.flags = _flags(flags, block.env, local)
    cpu.instructions = local["ic"] + off
    if kind == FAULT:
        cpu.cur_eip, cpu.cur_esp = eip, local["esp"]
        return False
    cpu.eip = local["v"] if eip is None else eip
    return True
