"""A Case from raw code bytes: how regression tests and `--replay` state a
divergence. The bytes are split into instructions with iced-x86 (not the
soft CPU's decoder) and each gets its flags effect from effects.py, with
what cannot be known from the bytes alone (a count in CL, a REP count)
taken at its most undefined."""
from __future__ import annotations

from ringvisor.difftest.effects import EFFECTS, Effect, STATUS, effect
from ringvisor.difftest.program import Case, Insn, normalizer

_ALIASES = {"CWDE": "CBW", "CDQ": "CWD", "PUSHFD": "PUSHF", "POPFD": "POPF", "PUSHAD": "PUSHA",
            "POPAD": "POPA", "IRETD": "IRET", "JECXZ": "JCXZ", "LOOPE": "LOOPZ",
            "LOOPNE": "LOOPNZ", "MOVSD": "MOVS", "MOVSW": "MOVS", "CMPSD": "CMPS", "CMPSW": "CMPS",
            "STOSD": "STOS", "STOSW": "STOS", "LODSD": "LODS", "LODSW": "LODS", "SCASD": "SCAS",
            "SCASW": "SCAS", "XLATB": "XLAT", "ICEBP": "INT1", "INT1": "INT1"}


def _effect(ins, name: str) -> Effect:
    from iced_x86 import OpKind
    cc = ins.condition_code - 1
    if name.startswith("SET") and cc >= 0:
        return effect("SETcc", cc=cc)
    if name.startswith("CMOV") and cc >= 0:
        return effect("CMOVcc", cc=cc)
    if name.startswith("J") and cc >= 0:
        return effect("Jcc", cc=cc)
    if name in ("SHL", "SAL", "SHR", "SAR", "ROL", "ROR", "RCL", "RCR", "SHLD", "SHRD"):
        last = ins.op_count - 1
        count = ins.immediate8 if ins.op_kind(last) == OpKind.IMMEDIATE8 else None
        try:
            return effect(name, _width(ins), count)
        except ValueError:                    # SHLD/SHRD beyond the operand size
            return Effect(undefined=STATUS)
    if (ins.has_rep_prefix or ins.has_repne_prefix) and name in ("CMPSB", "CMPS", "SCASB", "SCAS"):
        return Effect()                       # the count may be 0: flags possibly untouched
    return EFFECTS.get(name, Effect(undefined=STATUS))


def _width(ins) -> int:
    from iced_x86 import MemorySizeExt, OpKind, RegisterExt
    if ins.op_kind(0) == OpKind.REGISTER:
        return RegisterExt.size(ins.op0_register)
    return MemorySizeExt.size(ins.memory_size)


def nodes_from_code(code: bytes) -> tuple[Insn, ...]:
    from iced_x86 import Decoder, Mnemonic
    names = {v: k for k, v in Mnemonic.__dict__.items() if not k.startswith("_")}
    out = []
    for ins in Decoder(32, code, ip=0):
        name = names[ins.mnemonic].upper()
        name = _ALIASES.get(name, name)
        out.append(Insn(code[ins.ip:ins.ip + ins.len], name, _effect(ins, name)))
    return tuple(out)


def case_from_hex(code: str, cpl: int = 3, eflags: int = 2, seed: int = 0, **regs: int) -> Case:
    return Case(cpl, eflags | 2, regs, seed, nodes_from_code(bytes.fromhex(code)), normalizer(0, 0))
