"""A test program: instructions with their flags effects, forward branches
over short bodies, and the assembler that lays them out at CODE.

Undefined flags must never reach a result: the assembler tracks which flags
are undefined at every instruction (the union over both ways of a branch)
and puts a "normalizer" (CMP reg, imm32: all six status flags defined)
before any instruction that would read one. What is still undefined where
the run ends is masked when the engines' EFLAGS are compared.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace

from ringvisor.difftest.effects import COND_FLAGS, Effect, STATUS, effect
from ringvisor.difftest.world import CODE, LOOP_COUNTERS, terminator


@dataclass(frozen=True)
class Insn:
    code: bytes
    mnemonic: str                   # the SDM mnemonic, for reports and skip counts
    effect: Effect = Effect()
    ring0: bool = False             # only meaningful at CPL 0 (privileged by design)
    shows_paging: bool = False      # its result reveals CR0.PG or CR3 (MOV from CR0/CR3, SMSW)
    fixup: object = field(default=None, compare=False)   # eip -> code, for absolute targets


# Branch kinds: (opcode bytes, length of the rel field, flags read)
BRANCHES = {
    "jcc8": (None, 1), "jcc32": (None, 4), "jmp8": (b"\xeb", 1),
    "loop": (b"\xe2", 1), "loopz": (b"\xe1", 1), "loopnz": (b"\xe0", 1), "jecxz": (b"\xe3", 1),
}
_LOOP_READS = {"loopz": COND_FLAGS[4], "loopnz": COND_FLAGS[4]}
_MNEMONICS = {"jcc8": "Jcc", "jcc32": "Jcc", "jmp8": "JMP", "loop": "LOOP", "loopz": "LOOPZ",
              "loopnz": "LOOPNZ", "jecxz": "JCXZ"}


@dataclass(frozen=True)
class Branch:
    """A forward branch over `body` (taken or not, execution continues after it)."""
    kind: str
    body: tuple = ()
    cc: int = 0
    prefix: bytes = b""             # 0x67 makes LOOP/JECXZ use CX

    @property
    def reads(self) -> int:
        if self.kind.startswith("jcc"):
            return COND_FLAGS[self.cc]
        return _LOOP_READS.get(self.kind, 0)

    def opcode(self, rel: int) -> bytes:
        op, n = BRANCHES[self.kind]
        if self.kind == "jcc8":
            op = bytes((0x70 + self.cc,))
        elif self.kind == "jcc32":
            op = bytes((0x0F, 0x80 + self.cc))
        if n == 1 and rel > 127:
            raise ValueError("branch body too long for rel8")
        return self.prefix + op + (struct.pack("<b", rel) if n == 1 else struct.pack("<i", rel))


@dataclass(frozen=True)
class Loop:
    """`body` run `count` times: MOV dword [counter], count; body;
    DEC dword [counter]; JNZ body. The counter is in memory no test operand
    reaches, so the body may change every register."""
    body: tuple
    count: int
    counter: int = LOOP_COUNTERS[0]


@dataclass
class Program:
    cpl: int
    code: bytes
    end_eip: int
    listing: list[tuple[int, Insn]]
    undefined_at: dict[int, int]     # EIP -> status flags undefined before that instruction
    undefined_end: int
    ever_undefined: int = 0

    def undefined(self, eip: int | None, ended: bool) -> int:
        """Flags to mask when the run ended normally or at `eip`."""
        if ended:
            return self.undefined_end
        return self.undefined_at.get(eip, self.ever_undefined)

    def insn_at(self, eip: int) -> Insn | None:
        for at, insn in self.listing:
            if at == eip:
                return insn
        return None

    def mnemonic_at(self, eip: int) -> str | None:
        insn = self.insn_at(eip)
        return insn.mnemonic if insn else None

    @property
    def ring0_only(self) -> bool:
        return any(i.ring0 for _, i in self.listing)

    @property
    def shows_paging(self) -> bool:
        return any(i.shows_paging for _, i in self.listing)


@dataclass(frozen=True)
class Case:
    """One differential test: where it starts and what it runs."""
    cpl: int
    eflags: int
    regs: dict                      # eax ecx edx ebx ebp esi edi (ESP is the world's)
    seed: int                       # fills the data area and the stack
    nodes: tuple
    norm: Insn

    def program(self, quirks: dict[str, int] | None = None) -> "Program":
        return assemble(self.nodes, self.cpl, self.norm, quirks=quirks)


@dataclass
class _Asm:
    eip: int
    normalizer: Insn
    listing: list = field(default_factory=list)
    undefined_at: dict = field(default_factory=dict)
    ever: int = 0
    quirks: dict = field(default_factory=dict)


def normalizer(reg: int, imm: int) -> Insn:
    """CMP r32, imm32: defines OF SF ZF AF PF CF, changes nothing else."""
    return Insn(bytes((0x81, 0xF8 | reg)) + struct.pack("<I", imm & 0xFFFFFFFF), "CMP",
                Effect(writes=STATUS))


def assemble(nodes, cpl: int, norm: Insn | None = None, undefined: int = 0,
             quirks: dict[str, int] | None = None) -> Program:
    """Lay out `nodes` at CODE, then the terminator for `cpl`. `undefined`
    is the set of flags undefined at the start (none: the start state is
    known); `quirks` adds, by mnemonic, flags to treat as undefined (where
    an engine is known to compute them wrongly: pvm.py)."""
    a = _Asm(CODE, norm or normalizer(0, 0), quirks=quirks or {})
    code, undefined = _emit(a, tuple(nodes), undefined)
    end = a.eip
    return Program(cpl, code + terminator(cpl), end, a.listing, a.undefined_at, undefined,
                   a.ever | undefined)


def _put(a: _Asm, insn: Insn, undefined: int) -> tuple[bytes, int]:
    out = b""
    if insn.effect.reads & undefined:
        out, undefined = _put(a, a.normalizer, undefined)
    if insn.fixup is not None:
        code = insn.fixup(a.eip)
        assert len(code) == len(insn.code), "a fixup must keep the instruction's length"
        insn = replace(insn, code=code, fixup=None)
    a.listing.append((a.eip, insn))
    a.undefined_at[a.eip] = undefined
    a.ever |= undefined
    a.eip += len(insn.code)
    e = insn.effect
    return out + insn.code, (undefined & ~e.writes) | e.undefined | a.quirks.get(insn.mnemonic, 0)


_DEC_WRITES = effect("DEC").writes


def _emit_loop(a: _Asm, node: Loop, undefined: int) -> tuple[bytes, int]:
    init = Insn(b"\xc7\x05" + struct.pack("<II", node.counter, node.count), "MOV")
    out, undefined = _put(a, init, undefined)
    # The flags undefined at the loop head: those on entry and those left
    # by a pass through the body and the DEC (a fixpoint: the sets only grow).
    head = undefined
    while True:
        _, end = _emit(_Asm(a.eip, a.normalizer, quirks=a.quirks), node.body, head)
        grown = head | (end & ~_DEC_WRITES)
        if grown == head:
            break
        head = grown
    top = a.eip
    body, end = _emit(a, node.body, head)
    dec, end = _put(a, Insn(b"\xff\x0d" + struct.pack("<I", node.counter), "DEC", effect("DEC")), end)
    rel = top - (a.eip + 2)
    jnz = (b"\x75" + struct.pack("<b", rel)) if rel >= -128 else \
        (b"\x0f\x85" + struct.pack("<i", top - (a.eip + 6)))
    back, end = _put(a, Insn(jnz, "Jcc", effect("Jcc", cc=5)), end)
    return out + body + dec + back, end


def _emit(a: _Asm, nodes, undefined: int) -> tuple[bytes, int]:
    out = b""
    for node in nodes:
        if isinstance(node, Insn):
            code, undefined = _put(a, node, undefined)
            out += code
            continue
        if isinstance(node, Loop):
            code, undefined = _emit_loop(a, node, undefined)
            out += code
            continue
        if node.reads & undefined:
            code, undefined = _put(a, a.normalizer, undefined)
            out += code
        start = a.eip
        size = len(node.opcode(0))
        a.eip += size
        body, after = _emit(a, node.body, undefined)
        insn = Insn(node.opcode(len(body)), _MNEMONICS[node.kind], Effect(reads=node.reads))
        a.listing.append((start, insn))
        a.listing.sort(key=lambda p: p[0])
        a.undefined_at[start] = undefined
        a.ever |= undefined
        out += insn.code + body
        undefined |= after              # taken or not: either set may be live
    return out, undefined
