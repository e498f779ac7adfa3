"""Generators of system instructions (hypothesis): privileged and
IOPL-sensitive instructions, undefined opcodes, segment loads, far
transfers at the same privilege level, port I/O through the TSS bitmap,
the sensitive reads of system state, software interrupts."""
from __future__ import annotations

from hypothesis import strategies as st

from ringvisor.difftest import encoding as E
from ringvisor.difftest.effects import NONE, effect
from ringvisor.difftest.program import Insn
from ringvisor.difftest.strategies import (dest_reg, mem, rm_operand, u32, vwidths, widths)
from ringvisor.difftest.world import DATA, DATA_SIZE, OPEN_PORTS, STACK_START

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
    if kind in ("IO", "IOS"):
        # A port the TSS bitmap denies (even 4 bytes wide), so: #GP(0).
        port = draw(st.integers(0, 0xFFFF).filter(lambda p: not 0x7C < (p & 0xFF) < 0x84))
        setup = [E.mov_imm(E.EDX, port)]
        if kind == "IOS":
            op = draw(st.integers(0x6C, 0x6F))
            return setup + [_priv(draw(st.sampled_from((b"", E.REP))) + bytes((op,)),
                                  "INS" if op < 0x6E else "OUTS")]
        op = draw(st.sampled_from((0xE4, 0xE5, 0xE6, 0xE7, 0xEC, 0xED, 0xEE, 0xEF)))
        imm8 = bytes((port & 0xFF,)) if op < 0xE8 else b""
        return setup + [_priv(E.osize(draw(vwidths)) + bytes((op,)) + imm8,
                              "OUT" if op & 2 else "IN")]
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


