"""A decoded instruction written in Intel syntax, e.g.
"add dword ptr [ebx+esi*4+0x10], eax": what OUR decoder understood, read from
the same opcode table as the CPU (iced-x86 remains the project's independent
disassembler). disasm.py applies it to bytes.
"""
from __future__ import annotations

from ringvisor.cpu.x87 import mnemonic

R8 = ("al", "cl", "dl", "bl", "ah", "ch", "dh", "bh")
R16 = ("ax", "cx", "dx", "bx", "sp", "bp", "si", "di")
R32 = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
SREG = ("es", "cs", "ss", "ds", "fs", "gs")
PTR = {1: "byte", 2: "word", 4: "dword", 6: "fword", 8: "qword"}


def _reg(w: int, i: int) -> str:
    return {1: R8, 2: R16, 4: R32}.get(w, R32)[i]


def _mem(ins, w: int, default_seg: int | None = None) -> str:
    names = R16 if ins.asz == 2 else R32
    parts = []
    if ins.base >= 0:
        parts.append(names[ins.base])
    if ins.index >= 0:
        parts.append(names[ins.index] + (f"*{1 << ins.scale}" if ins.scale else ""))
    bits = 16 if ins.asz == 2 else 32
    disp = ins.disp & ((1 << bits) - 1)        # the decoder keeps 8-bit ones sign-extended
    if parts and disp >> (bits - 1):
        disp -= 1 << bits                      # with a register: a negative offset
    if disp or not parts:
        parts.append(f"{disp:#x}" if disp >= 0 or not parts else f"-{-disp:#x}")
    text = "+".join(parts).replace("+-", "-")
    seg = ""
    if any(p in (0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65) for p in ins.prefixes):
        seg = SREG[ins.seg] + ":"
    size = PTR.get(w, "")
    return f"{size + ' ptr ' if size else ''}{seg}[{text}]"


def format_instr(ins, address: int = 0) -> str:
    if ins.row is None:
        return "(bad)"
    row = ins.row
    name = row.mnemonic.lower()
    if name == "esc":
        return _x87(ins)
    if name in ("movs", "cmps", "stos", "lods", "scas", "ins", "outs"):
        name += {2: "w", 4: "d"}[ins.osz]
    elif name == "cbw" and ins.osz == 4:
        name = "cwde"
    elif name == "cwd" and ins.osz == 4:
        name = "cdq"
    elif name in ("pusha", "popa", "pushf", "popf", "iret") and ins.osz == 4:
        name += "d"
    ops = []
    for k, op in enumerate(row.operands):
        w = ins.w if k == 0 else ins.w1 if k == 1 else ins.osz
        kind = op.kind
        if kind in "EM":
            ops.append(_reg(w, ins.rm) if ins.mod == 3 else _mem(ins, w))
        elif kind == "G":
            ops.append(_reg(w, ins.reg))
        elif kind == "R":
            ops.append(R32[ins.rm])
        elif kind == "Z":
            ops.append(_reg(w, row.zreg))
        elif kind == "reg":
            ops.append(_reg(w, op.reg))
        elif kind in ("seg", "S"):
            ops.append(SREG[op.reg if kind == "seg" else ins.reg % 6])
        elif kind == "C":
            ops.append(f"cr{ins.reg}")
        elif kind == "D":
            ops.append(f"dr{ins.reg}")
        elif kind == "I":
            ops.append(f"{(ins.imm if k == 0 or row.operands[0].kind != 'I' else ins.imm2):#x}")
        elif kind == "J":
            mask = 0xFFFF if ins.osz == 2 else 0xFFFFFFFF
            ops.append(f"{(address + ins.length + ins.imm) & mask:#x}")
        elif kind == "A":
            ops.append(f"{ins.imm2:#x}:{ins.imm:#x}")
        elif kind == "O":
            ops.append(_mem(ins, w))
        elif kind == "const":
            ops.append("1")
        # X/Y string operands are implicit in the mnemonic
    prefix = ""
    if ins.lock:
        prefix += "lock "
    if ins.rep:
        prefix += "repne " if ins.rep == 2 else "rep "
    return (prefix + name + (" " + ", ".join(ops) if ops else "")).strip()


def _x87(ins) -> str:
    """An escape by the FPU's own table: `fld qword ptr [ebp-0x8]`, `fxch st(3)`."""
    text = mnemonic(ins.row.byte, ins.mod << 6 | ins.reg << 3 | ins.rm)
    if text is None:
        return "(bad x87)"
    name, _, operand = text.lower().partition(" ")
    if ins.mod == 3:
        return text.lower()
    size = X87_SIZES.get(operand, "")
    return f"{name} {size + ' ptr ' if size else ''}{_mem(ins, 0)}"


# The SDM's x87 memory operand types, as Intel syntax writes their size.
X87_SIZES = {"m32fp": "dword", "m64fp": "qword", "m80fp": "tbyte", "m16int": "word",
             "m32int": "dword", "m64int": "qword", "m80bcd": "tbyte", "m2byte": "word"}
