"""Control instructions (SDM vol. 1 8.3.10-8.3.11 and 8.1.10): FNINIT, FNCLEX,
FLDCW, FNSTCW, FNSTSW, FNSTENV/FLDENV and FNSAVE/FRSTOR in the four layouts of
SDM vol. 1 figures 8-9 to 8-12 (32- and 16-bit operand size, protected and real
mode), FNOP and FWAIT.
"""
from __future__ import annotations

from ringvisor.cpu.x87.state import (B, CW_RESERVED_ONES, CW_WRITABLE, ES, EXCEPTIONS,
                                     SF)


def fninit(fpu, arg, mem, ctx):
    fpu.reset()
    return 0


def fnclex(fpu, arg, mem, ctx):
    fpu.sw &= ~(EXCEPTIONS | SF | ES | B)
    fpu.ignne = False           # FERR# deasserts, and with it the PC's IGNNE#
    return 0


def set_control_word(fpu, value: int):
    """FLDCW: unmasking a set flag makes it pending (ES, B) for the next
    waiting instruction; masking every set flag clears the summary."""
    fpu.cw = value & CW_WRITABLE | CW_RESERVED_ONES
    _summarise(fpu)


def _summarise(fpu):
    if fpu.sw & ~fpu.cw & EXCEPTIONS:
        fpu.sw |= ES | B
    else:
        fpu.sw &= ~(ES | B)


def fldcw(fpu, arg, mem, ctx):
    set_control_word(fpu, mem.read(0, 2))
    return 0


def fnstcw(fpu, arg, mem, ctx):
    mem.write(0, 2, fpu.cw)
    return 0


def fnstsw_memory(fpu, arg, mem, ctx):
    mem.write(0, 2, fpu.status_word())
    return 0


def fnstsw_ax(fpu, arg, mem, ctx):
    ctx.ax = fpu.status_word()
    return 0


def fnop(fpu, arg, mem, ctx):
    return 0


# -- the environment image
def env_size(o32: bool) -> int:
    return 28 if o32 else 14


def store_env(fpu, mem, o32: bool, protected: bool):
    """The 14/28-byte environment at mem's offset 0."""
    words = [fpu.cw, fpu.status_word(), fpu.tag_word()]
    if protected:
        if o32:
            words += [fpu.fip, (fpu.fop << 16 | fpu.fcs) & 0x07FFFFFF, fpu.fdp, fpu.fds]
        else:
            words += [fpu.fip & 0xFFFF, fpu.fcs, fpu.fdp & 0xFFFF, fpu.fds]
    else:
        ip = (fpu.fcs << 4) + fpu.fip
        dp = (fpu.fds << 4) + fpu.fdp
        if o32:
            words += [ip & 0xFFFF, (ip >> 16 & 0xFFFF) << 12 | fpu.fop,
                      dp & 0xFFFF, (dp >> 16 & 0xFFFF) << 12]
        else:
            words += [ip & 0xFFFF, (ip >> 16 & 0xF) << 12 | fpu.fop,
                      dp & 0xFFFF, (dp >> 16 & 0xF) << 12]
    if o32:
        # Reserved upper halves read back as ones on silicon (CW, SW, TW, FDS).
        for n in (0, 1, 2):
            words[n] |= 0xFFFF0000
        if protected:
            words[6] |= 0xFFFF0000
    step = 4 if o32 else 2
    for n, word in enumerate(words):
        mem.write(n * step, step, word)


def load_env(fpu, mem, o32: bool, protected: bool):
    step = 4 if o32 else 2
    w = [mem.read(n * step, step) for n in range(7)]
    fpu.cw = w[0] & CW_WRITABLE | CW_RESERVED_ONES
    fpu.set_status_word(w[1] & 0xFFFF)
    fpu.set_tag_word(w[2] & 0xFFFF)
    if protected:
        if o32:
            fpu.fip, fpu.fcs, fpu.fop = w[3], w[4] & 0xFFFF, w[4] >> 16 & 0x7FF
            fpu.fdp, fpu.fds = w[5], w[6] & 0xFFFF
        else:
            fpu.fip, fpu.fcs, fpu.fdp, fpu.fds = w[3], w[4], w[5], w[6]
            fpu.fop = 0                 # the 16-bit protected layout has no FOP
    else:
        high = 0xFFFF if o32 else 0xF
        fpu.fip = w[3] & 0xFFFF | (w[4] >> 12 & high) << 16
        fpu.fop = w[4] & 0x7FF
        fpu.fdp = w[5] & 0xFFFF | (w[6] >> 12 & high) << 16
        fpu.fcs = fpu.fds = 0
    _summarise(fpu)             # ES and B follow the loaded flags and masks


def fnstenv(fpu, arg, mem, ctx):
    store_env(fpu, mem, ctx.o32, ctx.protected)
    fpu.cw |= EXCEPTIONS
    _summarise(fpu)             # everything masked now: ES and B clear
    return 0


def fldenv(fpu, arg, mem, ctx):
    load_env(fpu, mem, ctx.o32, ctx.protected)
    return 0


def fnsave(fpu, arg, mem, ctx):
    store_env(fpu, mem, ctx.o32, ctx.protected)
    base = env_size(ctx.o32)
    for i in range(8):
        mem.write(base + 10 * i, 10, fpu.st(i))
    fpu.reset()
    return 0


def frstor(fpu, arg, mem, ctx):
    base = env_size(ctx.o32)
    regs = [mem.read(base + 10 * i, 10) for i in range(8)]
    load_env(fpu, mem, ctx.o32, ctx.protected)
    for i, raw in enumerate(regs):
        fpu.regs[(fpu.top + i) & 7] = raw
    return 0
