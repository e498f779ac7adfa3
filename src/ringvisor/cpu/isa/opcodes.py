"""THE opcode table of the soft CPU (DESIGN.md: one declarative table).

Every row is `(opcode, "MNEMONIC operands", flags)` in Intel SDM notation:

* opcode: hex bytes, optionally `/n` (ModRM.reg selects the row),
  `+r` (register in the low three bits) or `+cc` (condition code in the low
  four bits, the mnemonic's `cc` is replaced by the condition's name).
* operands (SDM appendix A): E = ModRM r/m, G = ModRM reg, M = memory only,
  R = register only, I = immediate, J = relative offset, O = moffs,
  A = far pointer immediate, S = segment register (reg), C/D = control/debug
  register (reg), X = DS:rSI, Y = ES:rDI, Z = register in the opcode's low
  bits; sizes b=8, w=16, d=32, v=16/32 by operand size, z=16/32 immediate,
  bs = byte sign-extended to v, p = 16:16/16:32 pointer, s = 6-byte
  pseudo-descriptor, q = 64 bits, a = BOUND's pair. Fixed operands name the
  register (AL, eAX, CL, DX, ES…) or the constant 1.

Flags carry policy read by the decoder, the interpreter, the block compiler,
the disassembler and the monitors' reports:

* LOCK: the LOCK prefix is legal (with a memory destination); else #UD.
* PRIV: #GP(0) above CPL 0 (checked in one place: protection.check).
* IOPL: IOPL-sensitive (CLI/STI, I/O: then the TSS I/O bitmap).
* SENSITIVE: reveals or changes privileged state without trapping (the
  Popek-Goldberg hole of x86: Robin & Irvine 2000).
* ENDS_BLOCK: control leaves the straight line or the mode/interrupt state
  may change; the block compiler stops after this instruction.
* PMODE: #UD in real mode (and virtual-8086 mode).
* TSD: RDTSC, privileged when CR4.TSD is set.
* VMX: may cause a VM exit in VMX non-root operation though no privilege
  check applies (CPUID, VMCALL): routed through protection.check too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntFlag


class F(IntFlag):
    NONE = 0
    LOCK = 1
    PRIV = 2
    IOPL = 4
    SENSITIVE = 8
    ENDS_BLOCK = 16
    PMODE = 32
    TSD = 64
    VMX = 128


LOCK, PRIV, IOPL, SENSITIVE, ENDS_BLOCK, PMODE, TSD, VMX = (
    F.LOCK, F.PRIV, F.IOPL, F.SENSITIVE, F.ENDS_BLOCK, F.PMODE, F.TSD, F.VMX)
EB = ENDS_BLOCK

CC = ("O", "NO", "B", "NB", "Z", "NZ", "BE", "NBE", "S", "NS", "P", "NP", "L", "NL", "LE", "NLE")

_ALU = ("ADD", "OR", "ADC", "SBB", "AND", "SUB", "XOR", "CMP")
_ROT = ("ROL", "ROR", "RCL", "RCR", "SHL", "SHR", "SAL", "SAR")


def _alu_rows():
    rows = []
    for i, m in enumerate(_ALU):
        lk = F.NONE if m == "CMP" else LOCK
        b = i * 8
        rows += [(f"{b:02X}", f"{m} Eb,Gb", lk), (f"{b + 1:02X}", f"{m} Ev,Gv", lk),
                 (f"{b + 2:02X}", f"{m} Gb,Eb", 0), (f"{b + 3:02X}", f"{m} Gv,Ev", 0),
                 (f"{b + 4:02X}", f"{m} AL,Ib", 0), (f"{b + 5:02X}", f"{m} eAX,Iz", 0),
                 (f"80 /{i}", f"{m} Eb,Ib", lk), (f"81 /{i}", f"{m} Ev,Iz", lk),
                 (f"82 /{i}", f"{m} Eb,Ib", lk), (f"83 /{i}", f"{m} Ev,Ibs", lk)]
    return rows


def _rot_rows():
    rows = []
    for i, m in enumerate(_ROT):
        rows += [(f"C0 /{i}", f"{m} Eb,Ib", 0), (f"C1 /{i}", f"{m} Ev,Ib", 0),
                 (f"D0 /{i}", f"{m} Eb,1", 0), (f"D1 /{i}", f"{m} Ev,1", 0),
                 (f"D2 /{i}", f"{m} Eb,CL", 0), (f"D3 /{i}", f"{m} Ev,CL", 0)]
    return rows


SEG_MOVE = SENSITIVE | EB

TABLE: list[tuple[str, str, int]] = _alu_rows() + _rot_rows() + [
    ("06", "PUSH ES", SENSITIVE), ("07", "POP ES", SEG_MOVE),
    ("0E", "PUSH CS", SENSITIVE),
    ("16", "PUSH SS", SENSITIVE), ("17", "POP SS", SEG_MOVE),
    ("1E", "PUSH DS", SENSITIVE), ("1F", "POP DS", SEG_MOVE),
    ("27", "DAA", 0), ("2F", "DAS", 0), ("37", "AAA", 0), ("3F", "AAS", 0),
    ("40+r", "INC Zv", 0), ("48+r", "DEC Zv", 0), ("50+r", "PUSH Zv", 0), ("58+r", "POP Zv", 0),
    ("60", "PUSHA", 0), ("61", "POPA", 0), ("62", "BOUND Gv,Ma", 0), ("63", "ARPL Ew,Gw", PMODE),
    ("68", "PUSH Iz", 0), ("69", "IMUL Gv,Ev,Iz", 0), ("6A", "PUSH Ibs", 0),
    ("6B", "IMUL Gv,Ev,Ibs", 0),
    ("6C", "INSB Yb,DX", IOPL | EB), ("6D", "INS Yv,DX", IOPL | EB),
    ("6E", "OUTSB DX,Xb", IOPL | EB), ("6F", "OUTS DX,Xv", IOPL | EB),
    ("70+cc", "Jcc Jb", EB),
    ("84", "TEST Eb,Gb", 0), ("85", "TEST Ev,Gv", 0),
    ("86", "XCHG Eb,Gb", LOCK), ("87", "XCHG Ev,Gv", LOCK),
    ("88", "MOV Eb,Gb", 0), ("89", "MOV Ev,Gv", 0), ("8A", "MOV Gb,Eb", 0), ("8B", "MOV Gv,Ev", 0),
    ("8C", "MOV Ev,Sw", SENSITIVE), ("8D", "LEA Gv,M", 0), ("8E", "MOV Sw,Ew", SEG_MOVE),
    ("8F /0", "POP Ev", 0),
    ("90", "NOP", 0), ("91+r", "XCHG Zv,eAX", 0),
    ("98", "CBW", 0), ("99", "CWD", 0), ("9A", "CALL Ap", SENSITIVE | EB), ("9B", "WAIT", 0),
    ("9C", "PUSHF", SENSITIVE), ("9D", "POPF", SENSITIVE | EB), ("9E", "SAHF", 0), ("9F", "LAHF", 0),
    ("A0", "MOV AL,Ob", 0), ("A1", "MOV eAX,Ov", 0), ("A2", "MOV Ob,AL", 0), ("A3", "MOV Ov,eAX", 0),
    ("A4", "MOVSB Yb,Xb", 0), ("A5", "MOVS Yv,Xv", 0), ("A6", "CMPSB Xb,Yb", 0),
    ("A7", "CMPS Xv,Yv", 0), ("A8", "TEST AL,Ib", 0), ("A9", "TEST eAX,Iz", 0),
    ("AA", "STOSB Yb,AL", 0), ("AB", "STOS Yv,eAX", 0), ("AC", "LODSB AL,Xb", 0),
    ("AD", "LODS eAX,Xv", 0), ("AE", "SCASB AL,Yb", 0), ("AF", "SCAS eAX,Yv", 0),
    ("B0+r", "MOV Zb,Ib", 0), ("B8+r", "MOV Zv,Iv", 0),
    ("C2", "RET Iw", EB), ("C3", "RET", EB), ("C4", "LES Gv,Mp", SEG_MOVE),
    ("C5", "LDS Gv,Mp", SEG_MOVE), ("C6 /0", "MOV Eb,Ib", 0), ("C7 /0", "MOV Ev,Iz", 0),
    ("C8", "ENTER Iw,Ib", 0), ("C9", "LEAVE", 0), ("CA", "RETF Iw", SENSITIVE | EB),
    ("CB", "RETF", SENSITIVE | EB), ("CC", "INT3", EB), ("CD", "INT Ib", SENSITIVE | EB),
    ("CE", "INTO", EB), ("CF", "IRET", SENSITIVE | EB),
    ("D4", "AAM Ib", 0), ("D5", "AAD Ib", 0), ("D6", "SALC", 0), ("D7", "XLAT", 0),
    # x87 escapes: ModRM selects the FPU instruction (cpu/x87/table.py); the
    # E operand only makes the decoder read ModRM, SIB and displacement.
    ("D8", "ESC Ev", EB), ("D9", "ESC Ev", EB), ("DA", "ESC Ev", EB), ("DB", "ESC Ev", EB),
    ("DC", "ESC Ev", EB), ("DD", "ESC Ev", EB), ("DE", "ESC Ev", EB), ("DF", "ESC Ev", EB),
    ("E0", "LOOPNZ Jb", EB), ("E1", "LOOPZ Jb", EB), ("E2", "LOOP Jb", EB), ("E3", "JCXZ Jb", EB),
    ("E4", "IN AL,Ib", IOPL | EB), ("E5", "IN eAX,Ib", IOPL | EB),
    ("E6", "OUT Ib,AL", IOPL | EB), ("E7", "OUT Ib,eAX", IOPL | EB),
    ("E8", "CALL Jz", EB), ("E9", "JMP Jz", EB), ("EA", "JMP Ap", SENSITIVE | EB),
    ("EB", "JMP Jb", EB),
    ("EC", "IN AL,DX", IOPL | EB), ("ED", "IN eAX,DX", IOPL | EB),
    ("EE", "OUT DX,AL", IOPL | EB), ("EF", "OUT DX,eAX", IOPL | EB),
    ("F1", "INT1", EB), ("F4", "HLT", PRIV | EB), ("F5", "CMC", 0),
    ("F6 /0", "TEST Eb,Ib", 0), ("F6 /1", "TEST Eb,Ib", 0), ("F6 /2", "NOT Eb", LOCK),
    ("F6 /3", "NEG Eb", LOCK), ("F6 /4", "MUL Eb", 0), ("F6 /5", "IMUL Eb", 0),
    ("F6 /6", "DIV Eb", 0), ("F6 /7", "IDIV Eb", 0),
    ("F7 /0", "TEST Ev,Iz", 0), ("F7 /1", "TEST Ev,Iz", 0), ("F7 /2", "NOT Ev", LOCK),
    ("F7 /3", "NEG Ev", LOCK), ("F7 /4", "MUL Ev", 0), ("F7 /5", "IMUL Ev", 0),
    ("F7 /6", "DIV Ev", 0), ("F7 /7", "IDIV Ev", 0),
    ("F8", "CLC", 0), ("F9", "STC", 0), ("FA", "CLI", IOPL | EB), ("FB", "STI", IOPL | EB),
    ("FC", "CLD", 0), ("FD", "STD", 0),
    ("FE /0", "INC Eb", LOCK), ("FE /1", "DEC Eb", LOCK),
    ("FF /0", "INC Ev", LOCK), ("FF /1", "DEC Ev", LOCK), ("FF /2", "CALL Ev", EB),
    ("FF /3", "CALL Mp", SENSITIVE | EB), ("FF /4", "JMP Ev", EB),
    ("FF /5", "JMP Mp", SENSITIVE | EB), ("FF /6", "PUSH Ev", 0),
    # --- two-byte map -------------------------------------------------------
    ("0F 00 /0", "SLDT Ew", SENSITIVE | PMODE), ("0F 00 /1", "STR Ew", SENSITIVE | PMODE),
    ("0F 00 /2", "LLDT Ew", PRIV | PMODE), ("0F 00 /3", "LTR Ew", PRIV | PMODE),
    ("0F 00 /4", "VERR Ew", SENSITIVE | PMODE), ("0F 00 /5", "VERW Ew", SENSITIVE | PMODE),
    ("0F 01 /0", "SGDT Ms", SENSITIVE), ("0F 01 /1", "SIDT Ms", SENSITIVE),
    ("0F 01 /2", "LGDT Ms", PRIV | EB), ("0F 01 /3", "LIDT Ms", PRIV | EB),
    ("0F 01 /4", "SMSW Ew", SENSITIVE), ("0F 01 /6", "LMSW Ew", PRIV | EB),
    ("0F 01 /7", "INVLPG M", PRIV | EB),
    ("0F 02", "LAR Gv,Ew", SENSITIVE | PMODE), ("0F 03", "LSL Gv,Ew", SENSITIVE | PMODE),
    ("0F 06", "CLTS", PRIV | EB), ("0F 08", "INVD", PRIV), ("0F 09", "WBINVD", PRIV),
    ("0F 0B", "UD2", EB),
    ("0F 20", "MOV Rd,Cd", PRIV), ("0F 21", "MOV Rd,Dd", PRIV),
    ("0F 22", "MOV Cd,Rd", PRIV | EB), ("0F 23", "MOV Dd,Rd", PRIV | EB),
    ("0F 30", "WRMSR", PRIV | EB), ("0F 31", "RDTSC", TSD), ("0F 32", "RDMSR", PRIV),
    ("0F 34", "SYSENTER", EB), ("0F 35", "SYSEXIT", PRIV | EB),
    ("0F 40+cc", "CMOVcc Gv,Ev", 0),
    ("0F 80+cc", "Jcc Jz", EB), ("0F 90+cc", "SETcc Eb", 0),
    ("0F A0", "PUSH FS", SENSITIVE), ("0F A1", "POP FS", SEG_MOVE), ("0F A2", "CPUID", VMX),
    ("0F A3", "BT Ev,Gv", 0), ("0F A4", "SHLD Ev,Gv,Ib", 0), ("0F A5", "SHLD Ev,Gv,CL", 0),
    ("0F A8", "PUSH GS", SENSITIVE), ("0F A9", "POP GS", SEG_MOVE),
    ("0F AB", "BTS Ev,Gv", LOCK), ("0F AC", "SHRD Ev,Gv,Ib", 0), ("0F AD", "SHRD Ev,Gv,CL", 0),
    ("0F AF", "IMUL Gv,Ev", 0),
    ("0F B0", "CMPXCHG Eb,Gb", LOCK), ("0F B1", "CMPXCHG Ev,Gv", LOCK),
    ("0F B2", "LSS Gv,Mp", SEG_MOVE), ("0F B3", "BTR Ev,Gv", LOCK),
    ("0F B4", "LFS Gv,Mp", SEG_MOVE), ("0F B5", "LGS Gv,Mp", SEG_MOVE),
    ("0F B6", "MOVZX Gv,Eb", 0), ("0F B7", "MOVZX Gv,Ew", 0),
    ("0F BA /4", "BT Ev,Ib", 0), ("0F BA /5", "BTS Ev,Ib", LOCK),
    ("0F BA /6", "BTR Ev,Ib", LOCK), ("0F BA /7", "BTC Ev,Ib", LOCK),
    ("0F BB", "BTC Ev,Gv", LOCK), ("0F BC", "BSF Gv,Ev", 0), ("0F BD", "BSR Gv,Ev", 0),
    ("0F BE", "MOVSX Gv,Eb", 0), ("0F BF", "MOVSX Gv,Ew", 0),
    ("0F C0", "XADD Eb,Gb", LOCK), ("0F C1", "XADD Ev,Gv", LOCK),
    ("0F C7 /1", "CMPXCHG8B Mq", LOCK),
    # VMX (vol. 3C ch. 30): #UD outside VMX operation, VM exits in non-root
    # operation (with 66: VMCLEAR, with F3: VMXON, on the VMPTRLD row).
    ("0F 78", "VMREAD Ed,Gd", VMX | EB), ("0F 79", "VMWRITE Gd,Ed", VMX | EB),
    ("0F C7 /6", "VMPTRLD Mq", VMX | EB), ("0F C7 /7", "VMPTRST Mq", VMX | EB),
    ("0F C8+r", "BSWAP Zd", 0),
]

# Register forms of group opcodes that are instructions of their own: the
# ModRM byte is part of the opcode ("0F 01 C1" is VMCALL, where "0F 01 /0"
# with a memory operand is SGDT).
REGISTER_FORMS: list[tuple[str, str, int]] = [
    ("0F 01 C1", "VMCALL", VMX | EB), ("0F 01 C2", "VMLAUNCH", VMX | EB),
    ("0F 01 C3", "VMRESUME", VMX | EB), ("0F 01 C4", "VMXOFF", VMX | EB),
]

# Opcodes of the two-byte map that read a ModRM byte (for rows with /n the
# ModRM is implied).
_OPERAND_RE = re.compile(r"^([A-Z])([a-z]*)$")


@dataclass(frozen=True)
class Operand:
    kind: str          # E G M R I J O A S C D X Y Z, or "reg" / "seg" / "const"
    size: str          # b w d v z bs p s q a, or "" for fixed operands
    reg: int = -1      # fixed register number / segment number / constant value

    def __str__(self) -> str:
        return self.text

    @property
    def text(self) -> str:
        return getattr(self, "_text", self.kind + self.size)


FIXED_REGS = {"AL": (1, 0), "CL": (1, 1), "DL": (1, 2), "BL": (1, 3),
              "AX": (2, 0), "CX": (2, 1), "DX": (2, 2), "BX": (2, 3),
              "eAX": (0, 0), "eCX": (0, 1), "eDX": (0, 2), "eBX": (0, 3)}
SEGS = ("ES", "CS", "SS", "DS", "FS", "GS")


def parse_operand(text: str) -> Operand:
    if text in FIXED_REGS:
        size, reg = FIXED_REGS[text]
        op = Operand("reg", {1: "b", 2: "w", 0: "v"}[size], reg)
    elif text in SEGS:
        op = Operand("seg", "w", SEGS.index(text))
    elif text == "1":
        op = Operand("const", "b", 1)
    else:
        m = _OPERAND_RE.match(text)
        if not m:
            raise ValueError(f"bad operand {text!r}")
        op = Operand(m.group(1), m.group(2))
    object.__setattr__(op, "_text", text)
    return op


@dataclass
class Row:
    """One decoded table row (an instruction form)."""
    opcode: str            # as written in the table, e.g. "0F 01 /2"
    mnemonic: str          # e.g. "LGDT"
    operands: tuple[Operand, ...]
    flags: F
    map: int               # 1 = one-byte, 2 = 0F
    byte: int              # the opcode byte (after expansion of +r/+cc)
    reg: int | None        # /n
    cc: int = -1           # condition code for Jcc/SETcc/CMOVcc
    zreg: int = -1         # register for +r forms
    modrm: bool = False
    family: str = ""       # the mnemonic as written in the table ("Jcc" for JZ)
    handler: object = field(default=None, repr=False, compare=False)

    @property
    def text(self) -> str:
        return f"{self.mnemonic} {','.join(o.text for o in self.operands)}".strip()

    @property
    def privileged(self) -> bool:
        return bool(self.flags & PRIV)

    @property
    def sensitive(self) -> bool:
        return bool(self.flags & SENSITIVE)


def _expand(opcode: str, text: str, flags: int) -> list[Row]:
    parts = opcode.split()
    reg = None
    if parts[-1].startswith("/"):
        reg = int(parts.pop()[1:])
    mp = 2 if parts[0] == "0F" else 1
    last = parts[-1]
    mnemonic, _, ops = text.partition(" ")
    operands = tuple(parse_operand(o) for o in ops.split(",")) if ops else ()
    modrm = reg is not None or any(o.kind in "EGMRSCD" for o in operands)
    rows = []
    if last.endswith("+r"):
        first = int(last[:-2], 16)             # "91+r": registers 1..7 (90 is NOP)
        base = first & ~7
        for r in range(first & 7, 8):
            rows.append(Row(opcode, mnemonic, operands, F(flags), mp, base + r, reg, zreg=r,
                            modrm=modrm, family=mnemonic))
    elif last.endswith("+cc"):
        base = int(last[:-3], 16)
        for c in range(16):
            rows.append(Row(opcode, mnemonic.replace("cc", CC[c]), operands, F(flags), mp, base + c,
                            reg, cc=c, modrm=modrm, family=mnemonic))
    else:
        rows.append(Row(opcode, mnemonic, operands, F(flags), mp, int(last, 16), reg, modrm=modrm,
                        family=mnemonic))
    return rows


ROWS: list[Row] = [r for entry in TABLE for r in _expand(*entry)]


# Decode maps: MAPS[map][byte] is None (undefined: #UD), a Row, or a list of
# 8 Rows-or-None indexed by ModRM.reg.
MAPS: dict[int, list] = {1: [None] * 256, 2: [None] * 256}
for _row in ROWS:
    _slot = MAPS[_row.map]
    if _row.reg is None:
        assert _slot[_row.byte] is None, _row
        _slot[_row.byte] = _row
    else:
        if _slot[_row.byte] is None:
            _slot[_row.byte] = [None] * 8
        _slot[_row.byte][_row.reg] = _row


def _register_form(opcode: str, text: str, flags: int) -> Row:
    *lead, modrm = opcode.split()
    mp = 2 if lead[0] == "0F" else 1
    m = int(modrm, 16)
    mnemonic, _, _ = text.partition(" ")
    return Row(opcode, mnemonic, (), F(flags), mp, int(lead[-1], 16), (m >> 3) & 7, modrm=True,
               family=mnemonic)


# (map, opcode byte, ModRM byte) -> Row
MODRM_ROWS: dict[tuple[int, int, int], Row] = {}
for _entry in REGISTER_FORMS:
    _r = _register_form(*_entry)
    MODRM_ROWS[(_r.map, _r.byte, int(_entry[0].split()[-1], 16))] = _r
    ROWS.append(_r)


PREFIXES = {0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3}


def lookup(code: bytes | str, reg: int | None = None) -> Row | None:
    """The table row for an opcode (bytes, or hex text like "0F 01"), or a
    mnemonic ("LGDT"); for group opcodes pass ModRM.reg (or "/n" in the
    text). Monitors and reports query policy flags through this."""
    if isinstance(code, str):
        text = code.strip()
        if not re.fullmatch(r"[0-9A-Fa-f]{2}( [0-9A-Fa-f]{2})*( /\d)?", text):
            for row in ROWS:
                if row.mnemonic == text.upper() or row.text == text:
                    return row
            return None
        if "/" in text:
            text, _, r = text.partition("/")
            reg = int(r)
        code = bytes.fromhex(text)
    mp = 1
    if code[:1] == b"\x0f":
        mp, code = 2, code[1:]
    if not code:
        return None
    entry = MAPS[mp][code[0]]
    if isinstance(entry, list):
        if reg is None and len(code) > 1:
            reg = (code[1] >> 3) & 7
        return entry[reg] if reg is not None else None
    return entry


def rows_with(flag: F) -> list[Row]:
    """Every instruction form carrying a policy flag (PRIV, SENSITIVE, ...)."""
    return [r for r in ROWS if r.flags & flag]
