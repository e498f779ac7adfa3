"""Hypothesis strategies for whole differential tests: a start state
(registers, EFLAGS) and a sequence drawn from every category of
gen_integer.py and gen_system.py. Memory operands address the data area
(or the stack through ESP), never the world's tables."""
from __future__ import annotations

from hypothesis import strategies as st

from ringvisor.cpu.core import DF, ID, IF, IOPL_MASK, NT
from ringvisor.difftest.effects import STATUS
from ringvisor.difftest.gen_integer import (alu, bcd, bits, branch, counters, divide,
                                            double_shift, exchange, lea, loop, misc, multiply,
                                            setcc_cmov, shift, stack, string, unary)
from ringvisor.difftest.gen_system import (far, port_io, privileged, segments,
                                           software_interrupts, system_reads, undefined)
from ringvisor.difftest.program import Case, normalizer
from ringvisor.difftest.strategies import any_reg, u32

# --- whole tests --------------------------------------------------------------------------------
SIMPLE = (alu(), unary(), shift(), double_shift(), multiply(), divide(), bcd(), bits(), exchange(),
          setcc_cmov(), stack(), lea(), string(), misc())
CATEGORIES = {"alu": alu(), "unary": unary(), "shift": shift(), "double_shift": double_shift(),
              "multiply": multiply(), "divide": divide(), "bcd": bcd(), "bits": bits(),
              "exchange": exchange(), "conditions": setcc_cmov(), "stack": stack(), "lea": lea(),
              "string": string(), "misc": misc(), "counters": counters(), "undefined": undefined(),
              "segments": segments(), "port_io": port_io()}


@st.composite
def start_flags(draw, cpl: int):
    value = draw(st.integers(0, 0xFFFFFFFF)) & (STATUS | DF | IF | IOPL_MASK | NT | ID)
    return value | 2


@st.composite
def cases(draw, cpl: int, interrupts: bool = False, max_items: int = 8):
    """A Case: start flags and registers, data seed, the nodes, the normalizer."""
    eflags = draw(start_flags(cpl))
    regs = {r: draw(u32) for r in ("eax", "ecx", "edx", "ebx", "ebp", "esi", "edi")}
    pool = list(CATEGORIES.values()) + [branch(st.one_of(*SIMPLE)), loop(st.one_of(*SIMPLE)),
                                         far(cpl)]
    pool.append(system_reads(cpl))
    if cpl == 3:
        pool.append(privileged((eflags >> 12) & 3))
    if interrupts:
        pool.append(software_interrupts())
    nodes = []
    for item in draw(st.lists(st.one_of(*pool), min_size=1, max_size=max_items)):
        nodes.extend(item)
    norm = normalizer(draw(any_reg), draw(u32))
    return Case(cpl, eflags, regs, draw(st.integers(0, 0xFFFFFFFF)), tuple(nodes), norm)

