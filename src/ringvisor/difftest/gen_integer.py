"""Generators of the integer ISA (hypothesis): each strategy returns a list
of nodes (program.Insn / Branch), the instruction under test preceded by
the MOVs that give it known operands where it needs them (shift counts,
string pointers and counts, divisors that fit, stack frames for LEAVE)."""
from __future__ import annotations

from hypothesis import strategies as st

from ringvisor.cpu.core import DF, ID, IF, IOPL_MASK, NT
from ringvisor.difftest import encoding as E
from ringvisor.difftest.effects import NONE, STATUS, effect
from ringvisor.difftest.program import Branch, Insn, Loop
from ringvisor.difftest.strategies import (any_reg, dest_reg, mem, reg_for, rm_operand, u32,
                                           vwidths, widths)
from ringvisor.difftest.world import DATA, DATA_SIZE, STACK

ALU = ("ADD", "OR", "ADC", "SBB", "AND", "SUB", "XOR", "CMP")
ROT = ("ROL", "ROR", "RCL", "RCR", "SHL", "SHR", "SAL", "SAR")
LOCKABLE_ALU = {"ADD", "OR", "ADC", "SBB", "AND", "SUB", "XOR"}


# --- ALU, INC/DEC/NOT/NEG/TEST ------------------------------------------------------------
@st.composite
def alu(draw):
    i = draw(st.integers(0, 7))
    mn = ALU[i]
    writes = mn != "CMP"
    form = draw(st.sampled_from(("E,G", "G,E", "A,I", "80", "81", "82", "83")))
    width = 1 if form in ("80", "82") else draw(widths)
    if form in ("81", "83") and width == 1:
        width = 4
    eff = effect(mn, width)
    if form == "A,I":
        code = E.osize(width) + bytes((i * 8 + 4 + (width != 1),)) + E.imm(draw(u32), min(width, 4))
        return [Insn(code, mn, eff)]
    if form == "G,E":
        op = bytes((i * 8 + 2 + (width != 1),))
        reg = draw(reg_for(width) if writes else any_reg)
        return [E.modrm_insn(op, reg, draw(rm_operand(width, write=False)), mn, eff, width)]
    rm = draw(rm_operand(width, write=writes, memory_weight=2))
    lock = writes and isinstance(rm, E.Mem) and mn in LOCKABLE_ALU and draw(st.booleans())
    if form == "E,G":
        op = bytes((i * 8 + (width != 1),))
        return [E.modrm_insn(op, draw(any_reg), rm, mn, eff, width, lock=lock)]
    size = {"80": 1, "82": 1, "83": 1, "81": 2 if width == 2 else 4}[form]
    return [E.modrm_insn(bytes.fromhex(form), i, rm, mn, eff, width, E.imm(draw(u32), size),
                         lock=lock)]


@st.composite
def unary(draw):
    kind = draw(st.sampled_from(("INC", "DEC", "NOT", "NEG", "TEST", "INCr", "DECr")))
    width = draw(widths)
    if kind in ("INCr", "DECr"):
        width = draw(vwidths)
        base = 0x40 if kind == "INCr" else 0x48
        return [Insn(E.osize(width) + bytes((base + draw(dest_reg),)), kind[:3], effect(kind[:3]))]
    if kind == "TEST":
        form = draw(st.sampled_from(("E,G", "E,I", "A,I")))
        if form == "A,I":
            return [Insn(E.osize(width) + bytes((0xA8 + (width != 1),)) +
                         E.imm(draw(u32), min(width, 4)), "TEST", effect("TEST"))]
        rm = draw(rm_operand(width, write=False))
        if form == "E,G":
            return [E.modrm_insn(bytes((0x84 + (width != 1),)), draw(any_reg), rm, "TEST",
                                 effect("TEST"), width)]
        return [E.modrm_insn(bytes((0xF6 + (width != 1),)), draw(st.sampled_from((0, 1))), rm,
                             "TEST", effect("TEST"), width, E.imm(draw(u32), min(width, 4)))]
    rm = draw(rm_operand(width, memory_weight=2))
    lock = isinstance(rm, E.Mem) and draw(st.booleans())
    if kind in ("INC", "DEC"):
        return [E.modrm_insn(bytes((0xFE + (width != 1),)), kind == "DEC", rm, kind, effect(kind),
                             width, lock=lock)]
    return [E.modrm_insn(bytes((0xF6 + (width != 1),)), 2 if kind == "NOT" else 3, rm, kind,
                         effect(kind), width, lock=lock)]


# --- shifts and rotates ---------------------------------------------------------------------
counts = st.one_of(st.integers(0, 33), st.integers(0, 255), st.sampled_from((7, 8, 9, 15, 16, 17, 31, 32)))


@st.composite
def shift(draw):
    i = draw(st.integers(0, 7))
    mn = ROT[i]
    width = draw(widths)
    form = draw(st.sampled_from(("1", "CL", "Ib")))
    count = 1 if form == "1" else draw(counts)
    rm = draw(rm_operand(width))
    op = bytes(({"1": 0xD0, "CL": 0xD2, "Ib": 0xC0}[form] + (width != 1),))
    insn = E.modrm_insn(op, i, rm, mn, effect(mn, width, count), width,
                        E.imm(count, 1) if form == "Ib" else b"")
    return ([E.mov_imm(E.ECX, count, 1)] if form == "CL" else []) + [insn]


@st.composite
def double_shift(draw):
    left = draw(st.booleans())
    mn = "SHLD" if left else "SHRD"
    width = draw(vwidths)
    by_cl = draw(st.booleans())
    count = draw(counts)
    if width == 2 and count & 31 > 16:
        count &= 15                          # above 16 the result is undefined (SDM)
    op = bytes((0x0F, (0xA4 if left else 0xAC) + by_cl))
    insn = E.modrm_insn(op, draw(any_reg), draw(rm_operand(width)), mn, effect(mn, width, count),
                        width, b"" if by_cl else E.imm(count, 1))
    return ([E.mov_imm(E.ECX, count, 1)] if by_cl else []) + [insn]


# --- multiply and divide --------------------------------------------------------------------
@st.composite
def multiply(draw):
    form = draw(st.sampled_from(("MUL", "IMUL1", "IMUL2", "IMUL3i", "IMUL3b")))
    if form in ("MUL", "IMUL1"):
        width = draw(widths)
        mn = "MUL" if form == "MUL" else "IMUL"
        return [E.modrm_insn(bytes((0xF6 + (width != 1),)), 4 if form == "MUL" else 5,
                             draw(rm_operand(width, write=False)), mn, effect(mn), width)]
    width = draw(vwidths)
    reg, src = draw(dest_reg), draw(rm_operand(width, write=False))
    if form == "IMUL2":
        return [E.modrm_insn(b"\x0f\xaf", reg, src, "IMUL", effect("IMUL"), width)]
    if form == "IMUL3i":
        return [E.modrm_insn(b"\x69", reg, src, "IMUL", effect("IMUL"), width,
                             E.imm(draw(u32), width))]
    return [E.modrm_insn(b"\x6b", reg, src, "IMUL", effect("IMUL"), width, E.imm(draw(u32), 1))]


_DIVISOR_REGS = {1: (1, 3, 5, 7, 2, 6), 2: (1, 3, 5, 6, 7), 4: (1, 3, 5, 6, 7)}   # never the dividend


@st.composite
def divide(draw):
    signed = draw(st.booleans())
    mn = "IDIV" if signed else "DIV"
    width = draw(widths)
    op = bytes((0xF6 + (width != 1),))
    if draw(st.integers(0, 2)) == 0:             # random operands: often #DE
        return [E.modrm_insn(op, 7 if signed else 6, draw(rm_operand(width, write=False)), mn,
                             effect(mn), width)]
    reg = draw(st.sampled_from(_DIVISOR_REGS[width]))
    divisor = draw(u32) & ((1 << 8 * width) - 1) or 1
    setup = [E.mov_imm(reg, divisor, width)]
    if signed:                                   # sign-extend the dividend: fits unless MIN/-1
        setup.append(Insn(E.osize(width if width > 1 else 2) + b"\x98", "CBW") if width == 1 else
                     Insn(E.osize(width) + b"\x99", "CWD"))
    else:
        high = draw(st.integers(0, divisor - 1))
        setup.append(E.mov_imm(4 if width == 1 else E.EDX, high, width))   # AH or (E)DX
    return setup + [E.modrm_insn(op, 7 if signed else 6, E.Reg(reg), mn, effect(mn), width)]


# --- BCD --------------------------------------------------------------------------------------
@st.composite
def bcd(draw):
    mn = draw(st.sampled_from(("DAA", "DAS", "AAA", "AAS", "AAM", "AAD")))
    setup = []
    if draw(st.booleans()):                      # known AL/AH and AF/CF inputs
        setup = [E.mov_imm(E.EAX, draw(st.integers(0, 0xFFFF)), 2),
                 E.mov_imm(4, draw(st.integers(0, 255)), 1), Insn(b"\x9e", "SAHF", effect("SAHF")),
                 E.mov_imm(4, draw(st.integers(0, 255)), 1)]
    if mn in ("AAM", "AAD"):
        base = draw(st.one_of(st.just(10), st.integers(0, 255)))
        return setup + [Insn(bytes((0xD4 if mn == "AAM" else 0xD5, base)), mn, effect(mn))]
    return setup + [Insn(bytes(({"DAA": 0x27, "DAS": 0x2F, "AAA": 0x37, "AAS": 0x3F}[mn],)), mn,
                         effect(mn))]


# --- bit operations ---------------------------------------------------------------------------
@st.composite
def bits(draw):
    kind = draw(st.sampled_from(("BTr", "BTm", "BTi", "BSF", "BSR", "BSWAP")))
    width = draw(vwidths)
    if kind == "BSWAP":
        return [Insn(bytes((0x0F, 0xC8 + draw(dest_reg))), "BSWAP")]
    if kind in ("BSF", "BSR"):
        reg, src = draw(dest_reg), draw(dest_reg)
        setup = []
        if draw(st.integers(0, 2)) == 0:         # zero source: ZF=1, destination kept
            setup = [E.mov_imm(src, 0, 4)]
        elif draw(st.booleans()):
            setup = [E.mov_imm(src, 1 << draw(st.integers(0, 31)), 4)]
        rm = E.Reg(src) if setup or draw(st.booleans()) else draw(mem(write=False))
        return setup + [E.modrm_insn(bytes((0x0F, 0xBC if kind == "BSF" else 0xBD)), reg, rm, kind,
                                     effect(kind), width)]
    j = draw(st.integers(0, 3))
    mn = ("BT", "BTS", "BTR", "BTC")[j]
    if kind == "BTi":
        rm = draw(rm_operand(width, write=j != 0))
        lock = j != 0 and isinstance(rm, E.Mem) and draw(st.booleans())
        return [E.modrm_insn(b"\x0f\xba", 4 + j, rm, mn, effect(mn), width,
                             E.imm(draw(st.integers(0, 255)), 1), lock=lock)]
    op = bytes((0x0F, (0xA3, 0xAB, 0xB3, 0xBB)[j]))
    if kind == "BTr":
        return [E.modrm_insn(op, draw(any_reg), E.Reg(draw(dest_reg)), mn, effect(mn), width)]
    # Memory with a register bit offset: the offset reaches bytes around the operand.
    reg = draw(dest_reg)
    offset = draw(st.integers(-0x7FF, 0x7FF))
    where = E.data_mem(draw(st.integers(0x200, 0x5F0)))
    lock = j != 0 and draw(st.booleans())
    return [E.mov_imm(reg, offset, 4),
            E.modrm_insn(op, reg, where, mn, effect(mn), width, lock=lock)]


# --- exchange and compare-exchange -------------------------------------------------------------
@st.composite
def exchange(draw):
    kind = draw(st.sampled_from(("XCHG", "XCHGA", "XADD", "CMPXCHG", "CMPXCHG8B")))
    width = draw(widths)
    if kind == "XCHGA":
        width = draw(vwidths)
        return [Insn(E.osize(width) + bytes((0x90 + draw(dest_reg),)), "XCHG")]
    if kind == "CMPXCHG8B":
        where = draw(mem(write=True, forms=("abs32", "sib32", "abs16")))
        setup = []
        if draw(st.booleans()):                  # EDX:EAX equal to the operand: the store path
            setup = [E.modrm_insn(b"\x8b", E.EAX, where, "MOV"),
                     E.modrm_insn(b"\x8b", E.EDX, E.Mem(where.form, where.disp + 4, where.scale,
                                                          where.segment), "MOV")]
        return setup + [E.modrm_insn(b"\x0f\xc7", 1, where, kind, effect(kind),
                                     lock=draw(st.booleans()))]
    rm = draw(rm_operand(width, memory_weight=2))
    reg = draw(reg_for(width))
    lock = isinstance(rm, E.Mem) and draw(st.booleans())
    if kind == "XCHG":
        return [E.modrm_insn(bytes((0x86 + (width != 1),)), reg, rm, kind, NONE, width, lock=lock)]
    op = bytes((0x0F, (0xC0 if kind == "XADD" else 0xB0) + (width != 1)))
    setup = []
    if kind == "CMPXCHG" and draw(st.booleans()):   # accumulator equal to the destination
        setup = [E.modrm_insn(bytes((0x8A + (width != 1),)), E.EAX, rm, "MOV", NONE, width)]
    return setup + [E.modrm_insn(op, reg, rm, kind, effect(kind), width, lock=lock)]


# --- conditions and branches -------------------------------------------------------------------
@st.composite
def setcc_cmov(draw):
    cc = draw(st.integers(0, 15))
    if draw(st.booleans()):
        return [E.modrm_insn(bytes((0x0F, 0x90 + cc)), 0, draw(rm_operand(1)), "SETcc",
                             effect("SETcc", cc=cc), 1)]
    width = draw(vwidths)
    return [E.modrm_insn(bytes((0x0F, 0x40 + cc)), draw(dest_reg), draw(rm_operand(width, write=False)),
                         "CMOVcc", effect("CMOVcc", cc=cc), width)]


def branch(body_items):
    @st.composite
    def strategy(draw):
        kind = draw(st.sampled_from(("jcc8", "jcc8", "jcc32", "jmp8", "loop", "loopz", "loopnz",
                                     "jecxz")))
        body = []
        for item in draw(st.lists(body_items, min_size=0, max_size=3)):
            body.extend(item)
        prefix = b"\x67" if kind.startswith(("loop", "jecxz")) and draw(st.booleans()) else b""
        setup = []
        if kind.startswith(("loop", "jecxz")) and draw(st.booleans()):
            setup = [E.mov_imm(E.ECX, draw(st.sampled_from((0, 1, 2, 0x10000, 0x10001))), 4)]
        return setup + [Branch(kind, tuple(body), draw(st.integers(0, 15)), prefix)]
    return strategy()


def loop(body_items):
    """A body of up to three items run 1-4 times (exercises the compiled
    paths that keep a loop inside one block)."""
    @st.composite
    def strategy(draw):
        body = []
        for item in draw(st.lists(body_items, min_size=1, max_size=3)):
            body.extend(item)
        return [Loop(tuple(body), draw(st.integers(1, 4)))]
    return strategy()


# --- stack ---------------------------------------------------------------------------------
FLAG_BITS = STATUS | DF | IF | IOPL_MASK | NT | ID | 0x10000 | 0x20000 | 0x80000 | 0x100000


@st.composite
def stack(draw):
    kind = draw(st.sampled_from(("PUSHr", "POPr", "PUSHi", "PUSHm", "POPm", "PUSHF", "POPF",
                                 "PUSHA", "POPA", "ENTER", "LEAVE")))
    width = draw(vwidths)
    o = E.osize(width)
    if kind == "PUSHr":
        return [Insn(o + bytes((0x50 + draw(any_reg),)), "PUSH")]
    if kind == "POPr":
        return [Insn(o + bytes((0x58 + draw(dest_reg),)), "POP")]
    if kind == "PUSHi":
        if draw(st.booleans()):
            return [Insn(o + b"\x6a" + E.imm(draw(u32), 1), "PUSH")]
        return [Insn(o + b"\x68" + E.imm(draw(u32), width), "PUSH")]
    if kind == "PUSHm":
        return [E.modrm_insn(b"\xff", 6, draw(rm_operand(width, write=False)), "PUSH", NONE, width)]
    if kind == "POPm":
        return [E.modrm_insn(b"\x8f", 0, draw(rm_operand(width)), "POP", NONE, width)]
    if kind == "PUSHF":
        return [Insn(o + b"\x9c", "PUSHF", effect("PUSHF"))]
    if kind == "POPF":
        value = draw(st.integers(0, 0xFFFFFFFF)) & FLAG_BITS
        return [Insn(o + b"\x68" + E.imm(value, width), "PUSH"), Insn(o + b"\x9d", "POPF",
                                                                       effect("POPF"))]
    if kind in ("PUSHA", "POPA"):
        return [Insn(o + (b"\x60" if kind == "PUSHA" else b"\x61"), kind)]
    frame = STACK + draw(st.integers(0x600, 0xE00)) & ~1
    setup = [E.mov_imm(E.EBP, frame, 4)]
    if kind == "LEAVE":
        return setup + [Insn(o + b"\xc9", "LEAVE")]
    size, level = draw(st.integers(0, 0x80)), draw(st.one_of(st.integers(0, 3), st.integers(0, 255)))
    if level & 31 > 3:
        level = 32 + (level & 3)                 # the level is taken mod 32
    return setup + [Insn(o + b"\xc8" + E.imm(size, 2) + E.imm(level, 1), "ENTER")]


# --- LEA with every addressing form ---------------------------------------------------------
@st.composite
def lea(draw):
    width = draw(vwidths)
    reg = draw(dest_reg)
    addr16 = draw(st.integers(0, 4)) == 0
    mod = draw(st.integers(0, 2))
    rm = draw(st.integers(0, 7))
    tail = b""
    if not addr16 and rm == 4:
        tail = bytes((draw(st.integers(0, 255)),))                  # SIB: any scale/index/base
    disp = {0: 0, 1: 1, 2: 2 if addr16 else 4}[mod]
    if mod == 0 and ((addr16 and rm == 6) or (not addr16 and (rm == 5 or (rm == 4 and tail[0] & 7 == 5)))):
        disp = 2 if addr16 else 4
    tail += E.imm(draw(u32), disp) if disp else b""
    code = (E.ASIZE if addr16 else b"") + E.osize(width) + b"\x8d" + \
        bytes((mod << 6 | reg << 3 | rm,)) + tail
    return [Insn(code, "LEA")]


# --- string instructions --------------------------------------------------------------------
STRINGS = {"MOVS": 0xA4, "CMPS": 0xA6, "STOS": 0xAA, "LODS": 0xAC, "SCAS": 0xAE}


@st.composite
def string(draw):
    mn = draw(st.sampled_from(tuple(STRINGS)))
    width = draw(widths)
    count = draw(st.integers(0, 8))
    rep = draw(st.sampled_from((b"", E.REP, E.REPNE)))
    if mn in ("MOVS", "STOS", "LODS") and rep == E.REPNE and draw(st.booleans()):
        rep = E.REP
    addr16 = draw(st.integers(0, 3)) == 0
    down = draw(st.booleans())
    span = 8 * 4
    lo = span if down else 0
    src = DATA + draw(st.integers(lo, DATA_SIZE // 2 - span + lo))
    dst = DATA + DATA_SIZE // 2 + draw(st.integers(lo, DATA_SIZE // 2 - span + lo))
    high = draw(u32) & 0xFFFF0000 if addr16 else 0
    setup = [Insn(b"\xfd" if down else b"\xfc", "STD" if down else "CLD"),
             E.mov_imm(E.ESI, high | src), E.mov_imm(E.EDI, high | dst),
             E.mov_imm(E.ECX, (draw(u32) & 0xFFFF0000 if addr16 else 0) | count)]
    segment = draw(st.sampled_from(E.SEGMENT_PREFIXES)) if mn in ("MOVS", "CMPS", "LODS") else b""
    mnemonic = mn + ("B" if width == 1 else "")
    runs = count if rep else 1
    eff = effect(mnemonic) if runs else NONE
    code = rep + segment + (E.ASIZE if addr16 else b"") + E.osize(width) + \
        bytes((STRINGS[mn] + (width != 1),))
    return setup + [Insn(code, mnemonic, eff)]


# --- data movement and flag instructions --------------------------------------------------------
@st.composite
def misc(draw):
    kind = draw(st.sampled_from(("CBW", "CWD", "LAHF", "SAHF", "CF", "SALC", "XLAT", "MOV",
                                 "MOVi", "MOVm", "MOVX", "NOP", "ARPL", "BOUND")))
    width = draw(vwidths)
    if kind == "CBW":
        return [Insn(E.osize(width) + b"\x98", "CBW")]
    if kind == "CWD":
        return [Insn(E.osize(width) + b"\x99", "CWD")]
    if kind == "LAHF":
        return [Insn(b"\x9f", "LAHF", effect("LAHF"))]
    if kind == "SAHF":
        return [E.mov_imm(4, draw(st.integers(0, 255)), 1), Insn(b"\x9e", "SAHF", effect("SAHF"))]
    if kind == "CF":
        mn = draw(st.sampled_from(("CLC", "STC", "CMC", "CLD", "STD")))
        return [Insn(bytes(({"CLC": 0xF8, "STC": 0xF9, "CMC": 0xF5, "CLD": 0xFC, "STD": 0xFD}[mn],)),
                     mn, effect(mn))]
    if kind == "SALC":
        return [Insn(b"\xd6", "SALC", effect("SALC"))]
    if kind == "XLAT":
        addr16 = draw(st.booleans())
        base = DATA + draw(st.integers(0, DATA_SIZE - 256))
        return [E.mov_imm(E.EBX, (draw(u32) & 0xFFFF0000 if addr16 else 0) | base),
                Insn((E.ASIZE if addr16 else b"") + draw(st.sampled_from(E.SEGMENT_PREFIXES)) +
                     b"\xd7", "XLAT")]
    if kind == "MOV":
        w = draw(widths)
        to_rm = draw(st.booleans())
        op = bytes(((0x88 if to_rm else 0x8A) + (w != 1),))
        reg = draw(any_reg if to_rm else reg_for(w))
        return [E.modrm_insn(op, reg, draw(rm_operand(w, write=to_rm)), "MOV", NONE, w)]
    if kind == "MOVi":
        w = draw(widths)
        if draw(st.booleans()):
            return [E.mov_imm(draw(reg_for(w)), draw(u32), w)]
        return [E.modrm_insn(bytes((0xC6 + (w != 1),)), 0, draw(rm_operand(w)), "MOV", NONE, w,
                             E.imm(draw(u32), min(w, 4)))]
    if kind == "MOVm":                           # moffs forms
        w = draw(widths)
        addr16 = draw(st.booleans())
        where = E.imm(DATA + draw(st.integers(0, DATA_SIZE - 4)), 2 if addr16 else 4)
        op = draw(st.sampled_from((0xA0, 0xA2))) + (w != 1)
        return [Insn(draw(st.sampled_from(E.SEGMENT_PREFIXES[:2] + E.SEGMENT_PREFIXES[3:])) +
                     (E.ASIZE if addr16 else b"") + E.osize(w) + bytes((op,)) + where, "MOV")]
    if kind == "MOVX":
        op = draw(st.sampled_from((0xB6, 0xB7, 0xBE, 0xBF)))
        src_w = 1 if op in (0xB6, 0xBE) else 2
        return [E.modrm_insn(bytes((0x0F, op)), draw(dest_reg), draw(rm_operand(src_w, write=False)),
                             "MOVZX" if op < 0xBE else "MOVSX", NONE, width)]
    if kind == "ARPL":
        return [E.modrm_insn(b"\x63", draw(any_reg), draw(rm_operand(2)), "ARPL", effect("ARPL"))]
    if kind == "BOUND":
        return [E.modrm_insn(b"\x62", draw(any_reg), draw(mem(write=False, forms=("abs32", "sib32"))),
                             "BOUND", NONE, width)]
    return [Insn(b"\x90", "NOP")]


@st.composite
def counters(draw):
    """CPUID and RDTSC: the values differ by design (this CPU is a P54C, the
    TSC counts instructions), so the results are overwritten at once; what
    is checked is that they run, at this CPL, without a fault."""
    clobber = [E.mov_imm(r, draw(u32)) for r in (E.EAX, E.EBX, E.ECX, E.EDX)]
    if draw(st.booleans()):
        return [E.mov_imm(E.EAX, draw(st.sampled_from((0, 1))))] + \
            [Insn(b"\x0f\xa2", "CPUID")] + clobber
    return [Insn(b"\x0f\x31", "RDTSC")] + clobber


