"""What each instruction does to the arithmetic flags, from the Intel SDM
(vol. 1 appendix A, "EFLAGS Cross-Reference", and each instruction's
"Flags Affected"): which flags it reads, which it sets to a defined value
and which it leaves UNDEFINED. Silicon and the soft CPU may legitimately
differ in the undefined ones, so the differential tests mask them, and
must never let a later instruction consume them (see program.py).

Keyed by the mnemonics of the soft CPU's opcode table (cpu/isa/opcodes.py;
Jcc/SETcc/CMOVcc by their table family); a test checks every key is there.
"""
from __future__ import annotations

from dataclasses import dataclass

from ringvisor.cpu.core import AF, CF, DF, IF, OF, PF, SF, ZF

STATUS = OF | SF | ZF | AF | PF | CF


@dataclass(frozen=True)
class Effect:
    reads: int = 0        # flags whose value the instruction uses
    writes: int = 0       # flags it sets to a defined value
    undefined: int = 0    # flags it leaves undefined


NONE = Effect()
ARITH = Effect(writes=STATUS)
LOGIC = Effect(writes=OF | SF | ZF | PF | CF, undefined=AF)
MULTIPLY = Effect(writes=OF | CF, undefined=SF | ZF | AF | PF)
BIT_TEST = Effect(writes=CF, undefined=OF | SF | AF | PF)      # ZF unaffected
BIT_SCAN = Effect(writes=ZF, undefined=OF | SF | AF | PF | CF)

# Condition codes (tttn) -> the flags they test.
COND_FLAGS = (OF, OF, CF, CF, ZF, ZF, CF | ZF, CF | ZF, SF, SF, PF, PF,
              SF | OF, SF | OF, ZF | SF | OF, ZF | SF | OF)

EFFECTS: dict[str, Effect] = {
    **{m: ARITH for m in ("ADD", "SUB", "CMP", "NEG", "XADD", "CMPXCHG", "CMPSB", "CMPS",
                          "SCASB", "SCAS")},
    "ADC": Effect(CF, STATUS), "SBB": Effect(CF, STATUS),
    **{m: LOGIC for m in ("AND", "OR", "XOR", "TEST")},
    "INC": Effect(writes=OF | SF | ZF | AF | PF), "DEC": Effect(writes=OF | SF | ZF | AF | PF),
    "MUL": MULTIPLY, "IMUL": MULTIPLY,
    "DIV": Effect(undefined=STATUS), "IDIV": Effect(undefined=STATUS),
    "DAA": Effect(AF | CF, SF | ZF | AF | PF | CF, OF),
    "DAS": Effect(AF | CF, SF | ZF | AF | PF | CF, OF),
    "AAA": Effect(AF, AF | CF, OF | SF | ZF | PF),
    "AAS": Effect(AF, AF | CF, OF | SF | ZF | PF),
    "AAM": Effect(writes=SF | ZF | PF, undefined=OF | AF | CF),
    "AAD": Effect(writes=SF | ZF | PF, undefined=OF | AF | CF),
    **{m: BIT_TEST for m in ("BT", "BTS", "BTR", "BTC")},
    "BSF": BIT_SCAN, "BSR": BIT_SCAN,
    "CMPXCHG8B": Effect(writes=ZF), "ARPL": Effect(writes=ZF),
    "LAR": Effect(writes=ZF), "LSL": Effect(writes=ZF),
    "VERR": Effect(writes=ZF), "VERW": Effect(writes=ZF),
    "CLC": Effect(writes=CF), "STC": Effect(writes=CF), "CMC": Effect(CF, CF),
    "SAHF": Effect(writes=SF | ZF | AF | PF | CF),
    "LAHF": Effect(reads=SF | ZF | AF | PF | CF),
    "PUSHF": Effect(reads=STATUS | DF | IF), "POPF": Effect(writes=STATUS),
    "SALC": Effect(reads=CF), "INTO": Effect(reads=OF),
    "LOOPZ": Effect(reads=ZF), "LOOPNZ": Effect(reads=ZF),
    **{m: NONE for m in (
        "MOV", "MOVZX", "MOVSX", "LEA", "XCHG", "NOT", "BSWAP", "CBW", "CWD", "NOP", "PUSH",
        "POP", "PUSHA", "POPA", "ENTER", "LEAVE", "CPUID", "RDTSC", "XLAT", "MOVSB", "MOVS",
        "STOSB", "STOS", "LODSB", "LODS", "CLD", "STD", "CLI", "STI", "LOOP", "JCXZ", "JMP",
        "BOUND", "HLT", "UD2", "IN", "OUT", "INSB", "INS", "OUTSB", "OUTS", "SGDT", "SIDT",
        "SLDT", "STR", "SMSW", "LGDT", "LIDT", "LLDT", "LTR", "LMSW", "CLTS", "INVLPG",
        "INVD", "WBINVD", "RDMSR", "WRMSR", "SYSENTER", "SYSEXIT", "INT", "INT3", "INT1")},
}
CONDITIONAL = ("Jcc", "SETcc", "CMOVcc")     # reads COND_FLAGS[cc], writes nothing
SHIFTS = ("SHL", "SAL", "SHR", "SAR")
ROTATES = ("ROL", "ROR", "RCL", "RCR")
DOUBLE_SHIFTS = ("SHLD", "SHRD")


def effect(mnemonic: str, width: int = 4, count: int | None = None, cc: int | None = None) -> Effect:
    """The flags effect of one instruction. `width` is the operand size in
    bytes; `count` the shift/rotate count as encoded (imm8 or CL), None if
    unknown (then everything the instruction may touch counts as undefined);
    `cc` the condition code of Jcc/SETcc/CMOVcc."""
    if mnemonic in CONDITIONAL:
        return Effect(reads=COND_FLAGS[cc])
    if mnemonic in SHIFTS or mnemonic in ROTATES or mnemonic in DOUBLE_SHIFTS:
        return _shift_effect(mnemonic, width, count)
    return EFFECTS[mnemonic]


def _shift_effect(mn: str, width: int, count: int | None) -> Effect:
    reads = CF if mn in ("RCL", "RCR") else 0
    if count is None:
        return Effect(reads, 0, STATUS)
    n = count & 0x1F                  # IA-32 masks every shift/rotate count to 5 bits
    if n == 0:
        return Effect(reads)          # "If the count is 0, the flags are not affected."
    of_undefined = OF if n != 1 else 0
    if mn in ROTATES:
        return Effect(reads, CF | (OF & ~of_undefined), of_undefined)
    if mn in DOUBLE_SHIFTS:
        if n > width * 8:
            raise ValueError("SHLD/SHRD by more than the operand size: result undefined")
        return Effect(0, CF | SF | ZF | PF | (OF & ~of_undefined), AF | of_undefined)
    undefined = AF | of_undefined
    # "CF is undefined for SHL and SHR where the count is >= the operand size."
    if mn != "SAR" and n >= width * 8:
        undefined |= CF
    return Effect(0, (STATUS & ~undefined), undefined)
