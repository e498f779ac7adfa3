"""The differential harness's own parts: the SDM flags table, the
assembler's undefined-flag tracking, the replay decoder, the world."""
from __future__ import annotations

from ringvisor.cpu.core import AF, CF, OF, PF, SF, ZF
from ringvisor.cpu.isa.opcodes import ROWS
from ringvisor.difftest.effects import CONDITIONAL, EFFECTS, STATUS, effect
from ringvisor.difftest.program import Branch, Insn, assemble, normalizer
from ringvisor.difftest.replay import nodes_from_code
from ringvisor.difftest.world import CODE, terminator


def test_every_flags_table_key_is_in_the_opcode_table():
    names = {r.mnemonic for r in ROWS} | {r.family for r in ROWS}
    assert set(EFFECTS) - names == set()
    assert set(CONDITIONAL) <= names


def test_shift_flags_follow_the_count():
    assert effect("SHL", 4, 0) == effect("SHL", 4, 32)            # masked to 0: no flag touched
    assert effect("SHL", 4, 0).writes == effect("SHL", 4, 0).undefined == 0
    one = effect("SHR", 4, 1)
    assert one.writes & OF and one.undefined == AF
    many = effect("SAR", 4, 5)
    assert many.undefined == AF | OF and many.writes == CF | SF | ZF | PF
    assert effect("SHL", 1, 8).undefined & CF                    # count >= width: CF undefined
    assert not effect("SAR", 1, 8).undefined & CF
    assert effect("RCL", 1, 9).reads == CF and effect("RCL", 1, 9).undefined == OF
    assert effect("ROL", 2, 1).undefined == 0


def test_normalizer_goes_before_a_reader_of_an_undefined_flag():
    mul = Insn(b"\xf7\xe1", "MUL", effect("MUL"))
    setz = Insn(b"\x0f\x94\xc0", "SETcc", effect("SETcc", cc=4))
    seto = Insn(b"\x0f\x90\xc0", "SETcc", effect("SETcc", cc=0))
    norm = normalizer(3, 0x1234)
    p = assemble([mul, setz], 3, norm)
    assert p.code == mul.code + norm.code + setz.code + terminator(3)
    p = assemble([mul, seto], 3, norm)                            # OF is defined by MUL
    assert p.code == mul.code + seto.code + terminator(3)
    assert p.undefined_end == SF | ZF | AF | PF
    assert p.undefined_at[CODE] == 0 and p.undefined_at[CODE + 2] == SF | ZF | AF | PF


def test_a_branch_merges_the_undefined_flags_of_both_ways():
    mul = Insn(b"\xf7\xe1", "MUL", effect("MUL"))
    cmp_ = normalizer(0, 0)
    p = assemble([cmp_, Branch("jcc8", (mul,), cc=4)], 0)
    assert p.code[6:8] == b"\x74\x02"                            # JZ over the 2-byte MUL
    assert p.undefined_end == SF | ZF | AF | PF


def test_replay_splits_with_iced_and_takes_unknown_counts_as_undefined():
    nodes = nodes_from_code(bytes.fromhex("d3e0c1e001f3a6f7f1"))
    assert [n.mnemonic for n in nodes] == ["SHL", "SHL", "CMPSB", "DIV"]
    assert nodes[0].effect.undefined == STATUS                   # SHL by CL
    assert nodes[1].effect.writes & OF and nodes[1].effect.undefined == AF
    assert nodes[2].effect.writes == 0                           # REP: the count may be 0
    assert nodes[3].effect.undefined == STATUS


class _FakeHarness:
    """Diverges one way ("A") when the case runs `culprit` with EBX = 7,
    another ("B") when it runs it with any other EBX."""

    def __init__(self, culprit: bytes):
        self.culprit = culprit

    def check(self, case):
        from ringvisor.difftest.harness import Verdict
        from ringvisor.difftest.campaign import _flat
        if not any(n.code == self.culprit for n in _flat(case.nodes)):
            return Verdict()
        sig = ("A",) if case.regs.get("ebx") == 7 else ("B",)
        return Verdict(divergences=[f"divergence {sig[0]}"], signatures=[sig])


def test_reduce_keeps_only_what_makes_the_divergence():
    from dataclasses import replace
    from ringvisor.difftest.campaign import reduce, replay_command
    from ringvisor.difftest.program import Case
    culprit = Insn(b"\xd4\x0a", "AAM", effect("AAM"))
    filler = [Insn(b"\x40", "INC", effect("INC")), Insn(b"\x90", "NOP")]
    case = Case(3, 0x8D7, {"eax": 5, "ebx": 7, "ecx": 9}, 1,
                (filler[0], Branch("jcc8", (filler[1], culprit), cc=3), filler[1]), normalizer(0, 0))
    small = reduce(_FakeHarness(culprit.code), case, ("A",))
    assert small.nodes == (culprit,) and small.regs == {"eax": 0, "ebx": 7, "ecx": 0}
    # Without a signature any divergence will do: EBX goes too.
    assert reduce(_FakeHarness(culprit.code), case).regs == {"eax": 0, "ebx": 0, "ecx": 0}
    assert small.eflags & 0x8D5 == 0
    assert replay_command(small) == ("python -m ringvisor.difftest --replay d40a --cpl 3 "
                                     "--eflags 0x2 --reg ebx=0x7")
    assert reduce(_FakeHarness(b"\xcc"), replace(case, nodes=(culprit,))).nodes == (culprit,)


def test_a_loop_masks_what_a_pass_leaves_undefined_at_its_head():
    from ringvisor.difftest.program import Loop
    from ringvisor.difftest.world import LOOP_COUNTERS
    setb = Insn(b"\x0f\x92\xc0", "SETcc", effect("SETcc", cc=2))     # reads CF
    bsf = Insn(b"\x0f\xbc\xc3", "BSF", effect("BSF"))                 # CF undefined; DEC keeps it
    norm = normalizer(1, 7)
    p = assemble([Loop((setb, bsf), 3)], 3, norm)
    init = b"\xc7\x05" + LOOP_COUNTERS[0].to_bytes(4, "little") + (3).to_bytes(4, "little")
    dec = b"\xff\x0d" + LOOP_COUNTERS[0].to_bytes(4, "little")
    body = norm.code + setb.code + bsf.code
    assert p.code == init + body + dec + b"\x75" + bytes([(-(len(body) + len(dec) + 2)) & 0xFF]) + \
        terminator(3)
    assert p.undefined_end == CF
