"""The x87 FPU's state as plain data (SDM vol. 1 8.1).

Registers are kept in physical order R0..R7 as 80-bit integer images; ST(i) is
R[(top + i) & 7]. Like silicon (which keeps a one-bit tag per register and
computes the full tag word when it stores one), `valid` holds one bit per
physical register (1 = not empty) and `tag_word()` derives the SDM's two-bit
tags from the contents. The status word is kept without its TOP field.
"""
from __future__ import annotations

from ringvisor.cpu.x87 import float80 as f80

# Exception flags (status word) and masks (control word) share bit positions.
IE, DE, ZE, OE, UE, PE = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
EXCEPTIONS = 0x3F
SF, ES = 0x40, 0x80
C0, C1, C2, C3 = 0x100, 0x200, 0x400, 0x4000
CONDITION = C0 | C1 | C2 | C3
B = 0x8000
TOP_SHIFT = 11
TOP_FIELD = 7 << TOP_SHIFT

# Control word fields.
RC_NEAREST, RC_DOWN, RC_UP, RC_CHOP = range(4)
CW_INIT = 0x037F
CW_RESERVED_ONES = 0x0040       # bit 6 reads as 1 on P6-class processors
CW_WRITABLE = 0x1F3F            # masks, PC, RC, X (infinity control, inert)

# Tags in the tag word.
TAG_VALID, TAG_ZERO, TAG_SPECIAL, TAG_EMPTY = range(4)

_TAG_OF_CLASS = {
    f80.ZERO: TAG_ZERO, f80.NORMAL: TAG_VALID, f80.DENORMAL: TAG_SPECIAL,
    f80.INF: TAG_SPECIAL, f80.QNAN: TAG_SPECIAL, f80.SNAN: TAG_SPECIAL,
    f80.UNSUPPORTED: TAG_SPECIAL,
}


class Fpu:
    """One x87 FPU. Fields are public plain data; instructions mutate them."""

    __slots__ = ("regs", "valid", "top", "cw", "sw", "fip", "fcs", "fop",
                 "fdp", "fds", "ignne")

    def __init__(self):
        self.regs = [0] * 8
        self.ignne = False      # IGNNE# asserted (port 0xF0 on a PC): FERR# path
        self.reset()

    def reset(self):
        """FNINIT's state (SDM vol. 1 table 8-4); registers keep their bits."""
        self.valid = 0
        self.top = 0
        self.cw = CW_INIT
        self.sw = 0
        self.fip = self.fcs = self.fop = self.fdp = self.fds = 0
        self.ignne = False

    # -- words as software sees them
    def status_word(self) -> int:
        return self.sw | self.top << TOP_SHIFT

    def set_status_word(self, value: int):
        self.top = (value >> TOP_SHIFT) & 7
        self.sw = value & ~TOP_FIELD & 0xFFFF

    def tag_word(self) -> int:
        word = 0
        for i in range(8):
            if self.valid >> i & 1:
                tag = _TAG_OF_CLASS[f80.classify(self.regs[i])]
            else:
                tag = TAG_EMPTY
            word |= tag << (2 * i)
        return word

    def set_tag_word(self, word: int):
        """Only empty/non-empty is kept, as silicon does (SDM vol. 1 8.1.7)."""
        self.valid = 0
        for i in range(8):
            if (word >> (2 * i)) & 3 != TAG_EMPTY:
                self.valid |= 1 << i

    # -- the register stack
    def st(self, i: int) -> int:
        return self.regs[(self.top + i) & 7]

    def is_empty(self, i: int) -> bool:
        return not self.valid >> ((self.top + i) & 7) & 1

    def set_st(self, i: int, raw: int):
        phys = (self.top + i) & 7
        self.regs[phys] = raw
        self.valid |= 1 << phys

    def push(self, raw: int):
        self.top = (self.top - 1) & 7
        self.regs[self.top] = raw
        self.valid |= 1 << self.top

    def pop(self):
        self.valid &= ~(1 << self.top)
        self.top = (self.top + 1) & 7

    def copy(self) -> "Fpu":
        other = Fpu.__new__(Fpu)
        for name in Fpu.__slots__:
            value = getattr(self, name)
            setattr(other, name, list(value) if name == "regs" else value)
        return other

    def __eq__(self, other) -> bool:
        return isinstance(other, Fpu) and all(
            getattr(self, n) == getattr(other, n) for n in Fpu.__slots__)

    def __repr__(self) -> str:
        regs = " ".join(f"{r:020x}" for r in self.regs)
        return (f"Fpu(cw={self.cw:04x} sw={self.status_word():04x} "
                f"tag={self.tag_word():04x} regs=[{regs}])")
