"""Hypothesis strategies: start states and instruction sequences of the
integer ISA, each instruction with its SDM flags effect.

Every category strategy returns a list of nodes (program.Insn / Branch):
the instruction under test, preceded by the MOVs that give it known
operands where it needs them (shift counts, string pointers and counts,
divisors that fit, stack frames for LEAVE). Memory operands address the
data area (or the stack through ESP), never the world's tables.
"""
from __future__ import annotations

from hypothesis import strategies as st

from ringvisor.cpu.core import DF, ID, IF, IOPL_MASK, NT
from ringvisor.difftest import encoding as E
from ringvisor.difftest.effects import NONE, STATUS, effect
from ringvisor.difftest.program import Branch, Case, Insn, normalizer
from ringvisor.difftest.world import DATA, DATA_SIZE, OPEN_PORTS, STACK, STACK_START

ALU = ("ADD", "OR", "ADC", "SBB", "AND", "SUB", "XOR", "CMP")
ROT = ("ROL", "ROR", "RCL", "RCR", "SHL", "SHR", "SAL", "SAR")
LOCKABLE_ALU = {"ADD", "OR", "ADC", "SBB", "AND", "SUB", "XOR"}

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


# --- privileged and undefined -----------------------------------------------------------------
def _priv(code: bytes, mn: str) -> Insn:
    return Insn(code, mn, NONE, ring0=True)


@st.composite
def privileged(draw, iopl: int):
    """At CPL 3 every one of these must raise #GP(0) (or #UD where the
    encoding itself is invalid); the IOPL-sensitive ones only when IOPL < 3."""
    choices = ["HLT", "CR", "DR", "LGDT", "LIDT", "LLDT", "LTR", "LMSW", "INVLPG", "CLTS",
               "INVD", "WBINVD", "RDMSR", "WRMSR", "SYSEXIT", "CLI", "STI"]
    if iopl < 3:
        choices += ["IO", "IOS"]
    kind = draw(st.sampled_from(choices))
    if kind == "HLT":
        return [_priv(b"\xf4", "HLT")]
    if kind in ("CLI", "STI"):
        return [_priv(b"\xfa" if kind == "CLI" else b"\xfb", kind)]
    if kind == "IO":
        op = draw(st.sampled_from((0xE4, 0xE5, 0xE6, 0xE7, 0xEC, 0xED, 0xEE, 0xEF)))
        imm8 = bytes((draw(st.integers(0, 255)),)) if op < 0xE8 else b""
        return [_priv(E.osize(draw(vwidths)) + bytes((op,)) + imm8, "OUT" if op & 2 else "IN")]
    if kind == "IOS":
        op = draw(st.integers(0x6C, 0x6F))
        return [_priv(draw(st.sampled_from((b"", E.REP))) + bytes((op,)), "INS" if op < 0x6E else "OUTS")]
    if kind in ("CR", "DR"):
        op = draw(st.sampled_from((0x20, 0x22) if kind == "CR" else (0x21, 0x23)))
        modrm = draw(st.integers(0, 255)) | 0xC0
        return [_priv(bytes((0x0F, op, modrm)), "MOV " + kind)]
    simple = {"CLTS": b"\x0f\x06", "INVD": b"\x0f\x08", "WBINVD": b"\x0f\x09", "RDMSR": b"\x0f\x32",
              "WRMSR": b"\x0f\x30", "SYSEXIT": b"\x0f\x35"}
    if kind in simple:
        return [_priv(simple[kind], kind)]
    group = {"LGDT": (b"\x0f\x01", 2), "LIDT": (b"\x0f\x01", 3), "LMSW": (b"\x0f\x01", 6),
             "INVLPG": (b"\x0f\x01", 7), "LLDT": (b"\x0f\x00", 2), "LTR": (b"\x0f\x00", 3)}
    op, reg = group[kind]
    rm = draw(mem(write=False)) if kind in ("LGDT", "LIDT", "INVLPG") else draw(rm_operand(2, write=False))
    return [E.modrm_insn(op, reg, rm, kind, NONE, ring0=True)]


UNDEFINED_OPCODES = (
    b"\x0f\x0b", b"\x0f\xff", b"\x0f\xb9\xc0", b"\x0f\xb9\x05" + DATA.to_bytes(4, "little"),
    b"\xfe\xd0", b"\xfe\xf8", b"\xff\xf8", b"\xff\x38", b"\x8f\xe0", b"\x0f\x04", b"\x0f\x0a",
    b"\x0f\x0c", b"\x0f\x24\xc0", b"\x0f\x26\xc0", b"\x0f\x36",
    b"\xf0\x90", b"\xf0\x89\xc0", b"\xf0\x01\xc0", b"\xf0\x0f\xa3\x05" + DATA.to_bytes(4, "little"),
    b"\xf0\x40", b"\xf0\xf7\xd0", b"\x8d\xc0", b"\x0f\xc7\xc8", b"\xc4\xc0", b"\x66\x0f\x0b",
)


@st.composite
def undefined(draw):
    return [Insn(draw(st.sampled_from(UNDEFINED_OPCODES)), "#UD")]


# --- segment registers ----------------------------------------------------------------------
# Selectors that reach every check of a segment load in the harness's GDT
# (world.EXTRA_DESCRIPTORS): null, RPL/DPL mismatches, system, code,
# execute-only, read-only, not present, beyond the limit, the (null) LDT.
SELECTORS = (0, 3, 0x08, 0x0B, 0x10, 0x13, 0x18, 0x1B, 0x20, 0x21, 0x23, 0x28, 0x2B, 0x30, 0x33,
             0x38, 0x3B, 0x40, 0x43, 0x48, 0x4B, 0x50, 0x53, 0x58, 0x5B, 0x60, 0x63, 0x68, 0x6B,
             0x70, 0x73, 0x78, 0x7B, 0x0C, 0x0F, 0xFFFF)
selectors = st.one_of(st.sampled_from(SELECTORS), st.integers(0, 0xFFFF))
SREG_POP = {0: b"\x07", 2: b"\x17", 3: b"\x1f", 4: b"\x0f\xa1", 5: b"\x0f\xa9"}
SREG_PUSH = {0: b"\x06", 1: b"\x0e", 2: b"\x16", 3: b"\x1e", 4: b"\x0f\xa0", 5: b"\x0f\xa8"}
LOAD_POINTER = {0: b"\xc4", 2: b"\x0f\xb2", 3: b"\xc5", 4: b"\x0f\xb4", 5: b"\x0f\xb5"}


def _store16(offset: int, value: int) -> Insn:
    """MOV word [DATA+offset], imm16."""
    return E.modrm_insn(b"\xc7", 0, E.data_mem(offset), "MOV", NONE, 2, E.imm(value, 2))


@st.composite
def segments(draw):
    kind = draw(st.sampled_from(("MOV", "MOVm", "POP", "LxS", "READ", "PUSH")))
    sreg = draw(st.sampled_from((0, 2, 3, 3, 4, 5)))             # ES SS DS FS GS
    sel = draw(selectors)
    if kind == "MOV":
        reg = draw(dest_reg)
        return [E.mov_imm(reg, draw(u32) & 0xFFFF0000 | sel),
                E.modrm_insn(b"\x8e", sreg, E.Reg(reg), "MOV Sreg", NONE, draw(vwidths))]
    if kind == "MOVm":
        at = draw(st.integers(0, DATA_SIZE - 8))
        return [_store16(at, sel), E.modrm_insn(b"\x8e", sreg, E.data_mem(at), "MOV Sreg")]
    if kind == "POP":
        width = draw(vwidths)
        return [Insn(E.osize(width) + b"\x68" + E.imm(sel, width), "PUSH"),
                Insn(E.osize(width) + SREG_POP[sreg], "POP")]
    if kind == "LxS":
        at = draw(st.integers(0, DATA_SIZE - 8))
        width = draw(vwidths)
        reg = draw(dest_reg)
        offset = draw(u32)
        if sreg == 2 and draw(st.booleans()):                     # LSS ESP: a usable stack
            reg, offset = E.ESP, STACK_START - 0x100
        pointer = [E.modrm_insn(b"\xc7", 0, E.data_mem(at), "MOV", NONE, 4, E.imm(offset, 4)),
                   _store16(at + width, sel)]
        return pointer + [E.modrm_insn(LOAD_POINTER[sreg], reg, E.data_mem(at),
                                       {0: "LES", 2: "LSS", 3: "LDS", 4: "LFS", 5: "LGS"}[sreg],
                                       NONE, width)]
    if kind == "READ":
        sreg = draw(st.integers(0, 7))                            # 6 and 7 are #UD
        return [E.modrm_insn(b"\x8c", sreg, draw(rm_operand(draw(vwidths))), "MOV", NONE,
                             draw(vwidths))]
    # PUSH Sreg with a 32-bit operand size writes 16 or 32 bits (SDM PUSH:
    # either is allowed): define the upper half of the slot afterwards.
    width = draw(vwidths)
    out = [Insn(E.osize(width) + SREG_PUSH[draw(st.sampled_from(tuple(SREG_PUSH)))], "PUSH")]
    if width == 4:
        out.append(E.modrm_insn(b"\xc7", 0, E.Mem("esp8", 2), "MOV", NONE, 2,
                                E.imm(draw(u32), 2)))
    return out


# --- far transfers (same privilege level) -------------------------------------------------------
def _next(length: int, after: int = 0):
    """A fixup: the immediate is the address right after this instruction
    (+ `after` more bytes); the instruction's last 4/6 bytes hold it."""
    def fix(code: bytes, at: int):
        return lambda eip: code[:at] + E.imm(eip + length + after, 4) + code[at + 4:]
    return fix


@st.composite
def far(draw, cpl: int):
    own = 0x1B if cpl == 3 else 0x08
    others = (0, own & ~3, own | 1, 0x08, 0x0B, 0x10, 0x18, 0x1B, 0x23, 0x40, 0x43, 0x60, 0x63,
              0x68, 0x6B, 0x78, 0x0C)
    sel = draw(st.one_of(st.just(own), st.sampled_from(others)))
    kind = draw(st.sampled_from(("JMPp", "CALLp", "JMPm", "CALLm", "RETF")))
    if kind in ("JMPp", "CALLp"):
        code = (b"\xea" if kind == "JMPp" else b"\x9a") + bytes(4) + E.imm(sel, 2)
        return [Insn(code, "JMP" if kind == "JMPp" else "CALL", NONE, fixup=_next(7)(code, 1))]
    if kind in ("JMPm", "CALLm"):
        at = draw(st.integers(0, DATA_SIZE - 8))
        jump = E.modrm_insn(b"\xff", 5 if kind == "JMPm" else 3, E.data_mem(at), kind[:-1])
        store = E.modrm_insn(b"\xc7", 0, E.data_mem(at), "MOV", NONE, 4, bytes(4))
        sel_store = _store16(at + 4, sel)
        after = len(sel_store.code) + len(jump.code)
        return [Insn(store.code, "MOV", NONE, fixup=_next(len(store.code), after)(store.code, 6)),
                sel_store, jump]
    if cpl == 0 and sel & 3:
        sel &= ~3                      # RETF to an outer ring would pop a stack we did not push
    extra = draw(st.sampled_from((None, 0, 4, 6)))
    ret = b"\xcb" if extra is None else b"\xca" + E.imm(extra, 2)
    push = b"\x68" + bytes(4)
    return [Insn(b"\x68" + E.imm(sel, 4), "PUSH"),
            Insn(push, "PUSH", NONE, fixup=_next(5, len(ret))(push, 1)), Insn(ret, "RETF")]


# --- port I/O: the TSS bitmap opens OPEN_PORTS to ring 3 ----------------------------------------
@st.composite
def port_io(draw):
    ports = st.integers(min(OPEN_PORTS) - 2, max(OPEN_PORTS) + 2)
    width = draw(widths)
    o = E.osize(width)
    kind = draw(st.sampled_from(("IMM", "DX", "STRING")))
    out_ = draw(st.booleans())
    if kind == "IMM":
        return [Insn(o + bytes((0xE4 + 2 * out_ + (width != 1), draw(ports))), "OUT" if out_ else "IN")]
    setup = [E.mov_imm(E.EDX, draw(u32) & 0xFFFF0000 | draw(ports))]
    if kind == "DX":
        return setup + [Insn(o + bytes((0xEC + 2 * out_ + (width != 1),)), "OUT" if out_ else "IN")]
    down = draw(st.booleans())
    count = draw(st.integers(0, 4))
    where = DATA + draw(st.integers(16, DATA_SIZE - 32))
    setup += [Insn(b"\xfd" if down else b"\xfc", "STD" if down else "CLD"),
              E.mov_imm(E.ESI if out_ else E.EDI, where), E.mov_imm(E.ECX, count)]
    rep = draw(st.sampled_from((b"", E.REP)))
    code = rep + o + bytes(((0x6E if out_ else 0x6C) + (width != 1),))
    return setup + [Insn(code, "OUTS" if out_ else "INS")]


# --- ring-0 reads of system state -------------------------------------------------------------
@st.composite
def system_reads(draw, cpl: int):
    """Instructions that read system state. At any CPL the sensitive ones
    that do not trap (SGDT SIDT SLDT STR SMSW, LAR LSL VERR VERW: the
    Popek-Goldberg hole); at CPL 0 also MOV from CRn, CLTS, WBINVD. PVM's
    emulator lacks LAR/LSL/VERR/VERW: counted as skipped there."""
    kinds = ("SGDT", "SIDT", "SLDT", "STR", "SMSW", "LAR", "LSL", "VERR", "VERW")
    if cpl == 0:
        kinds += ("CR", "CR", "CLTS", "WBINVD")
    kind = draw(st.sampled_from(kinds))
    if kind == "CR":
        cr = draw(st.sampled_from((0, 2, 3, 4)))
        mod = draw(st.integers(0, 3))                   # the mod bits are ignored (SDM MOV CR)
        return [Insn(bytes((0x0F, 0x20, mod << 6 | cr << 3 | draw(dest_reg))), "MOV CR", NONE,
                     ring0=True, shows_paging=cr in (0, 3))]
    if kind in ("SGDT", "SIDT"):
        return [E.modrm_insn(b"\x0f\x01", 0 if kind == "SGDT" else 1, draw(mem(span=8)), kind)]
    if kind in ("SLDT", "STR"):
        return [E.modrm_insn(b"\x0f\x00", 0 if kind == "SLDT" else 1, draw(rm_operand(2)), kind,
                             NONE, draw(vwidths))]
    if kind == "SMSW":
        rm, width = draw(rm_operand(2)), draw(vwidths)
        smsw = E.modrm_insn(b"\x0f\x01", 4, rm, kind, NONE, width)
        out = [Insn(smsw.code, kind, NONE, shows_paging=True)]
        if isinstance(rm, E.Reg) and width == 4:
            # SMSW r32: "the high-order 16 bits are undefined" (SDM); drop them.
            out.append(E.modrm_insn(b"\x0f\xb7", rm.n, rm, "MOVZX"))
        return out
    if kind in ("CLTS", "WBINVD"):
        return [_priv(b"\x0f\x06" if kind == "CLTS" else b"\x0f\x09", kind)]
    setup = [E.mov_imm(E.EBX, draw(selectors), 4)]
    if kind in ("LAR", "LSL"):
        return setup + [E.modrm_insn(bytes((0x0F, 0x02 if kind == "LAR" else 0x03)), draw(dest_reg),
                                     E.Reg(E.EBX), kind, effect(kind), draw(vwidths))]
    return setup + [E.modrm_insn(b"\x0f\x00", 4 if kind == "VERR" else 5, E.Reg(E.EBX), kind,
                                 effect(kind), 4)]


@st.composite
def software_interrupts(draw):
    """INT n / INT3 / INTO / INT1 (PVM turns them into #UD at CPL 3 and its
    emulator lacks them at CPL 0: used where the backend is VT-x/AMD-V)."""
    kind = draw(st.sampled_from(("INT", "INT3", "INTO", "INT1")))
    if kind == "INT":
        return [Insn(b"\xcd" + bytes((draw(st.sampled_from((3, 4, 5, 13, 14, 32, 0x80, 255))),)), "INT")]
    return [Insn({"INT3": b"\xcc", "INTO": b"\xce", "INT1": b"\xf1"}[kind], kind, effect(kind))]


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
    pool = list(CATEGORIES.values()) + [branch(st.one_of(*SIMPLE)), far(cpl)]
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

