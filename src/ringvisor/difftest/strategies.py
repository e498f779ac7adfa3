"""Operand strategies shared by the generators: 32-bit values with the
interesting edges, operand widths, registers a test may write (never ESP),
and memory operands that address the data area or the stack, in every
addressing form and with segment overrides."""
from __future__ import annotations

from hypothesis import strategies as st

from ringvisor.difftest import encoding as E
from ringvisor.difftest.world import DATA_SIZE

u32 = st.one_of(st.integers(0, 0xFFFFFFFF),
                st.sampled_from((0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF,
                                 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE)))
widths = st.sampled_from((1, 2, 4))
vwidths = st.sampled_from((2, 4))
any_reg = st.integers(0, 7)
dest_reg = st.sampled_from(E.WRITABLE)


def reg_for(width: int):
    """A register a test may write at this width (8-bit: any of AL..BH)."""
    return any_reg if width == 1 else dest_reg


@st.composite
def mem(draw, span: int = 8, forms=("abs32", "abs32", "sib32", "abs16", "esp8"), write=True):
    form = draw(st.sampled_from(forms))
    segment = draw(st.sampled_from(E.SEGMENT_PREFIXES if not write else
                                   tuple(p for p in E.SEGMENT_PREFIXES if p != b"\x2e") + (b"",) * 6))
    scale = draw(st.integers(0, 3))
    if form == "esp8":
        return E.Mem(form, draw(st.integers(0, 0x7C)), scale, segment)
    return E.data_mem(draw(st.integers(0, DATA_SIZE - span)), form, scale, segment)


def rm_operand(width: int, write: bool = True, memory_weight: int = 1):
    regs = (reg_for(width) if write else any_reg).map(E.Reg)
    return st.one_of(regs, *[mem(write=write)] * memory_weight)

