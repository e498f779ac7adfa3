"""Every divergence the differential tests found (ringvisor.difftest), as a
concrete case.

Each case states the SDM's answer and checks the soft CPU against it
(interpreter and compiled blocks, with and without paging), so it runs
everywhere; `test_regressions_agree_with_kvm` runs every case through the
harness on both engines where /dev/kvm exists. Divergences where KVM's
instruction emulator is the one that is wrong (on PVM it executes every
32-bit guest instruction) are recorded in ringvisor.difftest.pvm and
checked here on the soft side only.
"""
from __future__ import annotations

import pytest

from ringvisor.cpu.core import PF, RF, SF, ZF
from ringvisor.difftest.harness import Harness
from ringvisor.difftest.replay import case_from_hex
from ringvisor.difftest.runners import SoftRunner
from ringvisor.difftest.world import CODE, STACK, STACK_START

RUNS = [(False, False), (True, False), (True, True)]     # (blocks, paging)


def soft(case, blocks: bool = True, paging: bool = False):
    runner = SoftRunner(paging=paging, blocks=blocks)
    try:
        return runner.run(case, case.program())
    finally:
        runner.close()


def each_run(case):
    return [soft(case, blocks, paging) for blocks, paging in RUNS]


# --- RF in the EFLAGS image of exception frames ------------------------------------------------
# Found at once: every fault frame from the kvm engine had RF set, none from
# the soft CPU. SDM vol. 3 17.3.1.1: "For any fault-class exception except a
# debug exception generated in response to an instruction breakpoint, the
# value pushed for RF is 1."
RF_FAULTS = [("0f0b", 3, 6), ("f4", 3, 13), ("31c9f7f1", 0, 0), ("0f0b", 0, 6)]


@pytest.mark.parametrize("code,cpl,vector", RF_FAULTS)
def test_fault_frames_push_rf_set(code, cpl, vector):
    for out in each_run(case_from_hex(code, cpl=cpl)):
        assert out.event == "exception" and out.vector == vector
        assert out.eflags & RF


def test_trap_frames_push_rf_as_it_was():
    # INT3 (its gate has DPL 3 in the harness's IDT): a trap, RF pushed as 0.
    for out in each_run(case_from_hex("cc", cpl=3)):
        assert out.event == "exception" and out.vector == 3 and out.eip == CODE + 1
        assert not out.eflags & RF


# Found by the hypothesis campaign at CPL 0: RF restored by IRET stuck for
# good (engine and blocks never cleared it). SDM 17.3.1.1: the processor
# clears RF after the next instruction completes.
def test_rf_from_iret_is_cleared_after_the_next_instruction():
    # pushfd; or dword [esp], RF; push cs; push target; iretd; target: nop
    target = CODE + 1 + 7 + 1 + 5 + 1
    code = "9c" "810c2400000100" "0e" "68" + target.to_bytes(4, "little").hex() + "cf" "90"
    for out in each_run(case_from_hex(code, cpl=0)):
        assert out.event == "end" and not out.eflags & RF


# --- compiled blocks: flags before a faulting MOV from/to CRn/DRn --------------------------------
# Found at CPL 3 (shr ecx,7; mov esp,cr5; and eax,esi): the kvm engine and
# the interpreter pushed the SHR flags with the #UD/#GP frame, compiled
# blocks the flags from before the SHR (dead-flag elimination counted every
# "MOV" as flag-neutral, the faulting MOV CRn/DRn forms included). Fixed by
# the trace compiler (258e10a).
@pytest.mark.parametrize("code,at", [("01d80f21c021c0", 2), ("c1e9070f20ec21f0", 3)])
def test_flags_before_a_faulting_mov_from_dr_or_cr_in_a_block(code, at):
    case = case_from_hex(code, cpl=3, eflags=0x24D6, eax=0x1234, ebx=0x7FFFFFFF, ecx=0x7FFF)
    interp, blocks = soft(case, blocks=False), soft(case, blocks=True)
    assert interp.event == blocks.event == "exception" and interp.eip == blocks.eip == CODE + at
    assert blocks.eflags == interp.eflags


# --- KVM's emulator: AAM/AAD flags ------------------------------------------------------------------
# Found at CPL 3 and 0: KVM's em_aam/em_aad compute SF and ZF from all of
# EAX (an OR at the 32-bit operand size). SDM: "The SF, ZF, and PF flags are
# set according to the resulting binary value in the AL register."
@pytest.mark.parametrize("code,eax,al", [("d4cb", 0x80007B32, 0x32), ("d5c2", 0x8000CEFF, 0x1B),
                                         ("d40a", 0x80000000, 0x00)])
def test_aam_aad_flags_come_from_al(code, eax, al):
    for out in each_run(case_from_hex(code, cpl=3, eax=eax)):
        assert out.event == "end" and out.regs[0] & 0xFF == al
        assert bool(out.eflags & SF) == bool(al & 0x80)
        assert bool(out.eflags & ZF) == (al == 0)
        assert bool(out.eflags & PF) == (bin(al).count("1") % 2 == 0)


# --- KVM's emulator: ENTER with a 16-bit operand size --------------------------------------------
# Found at CPL 3: KVM's em_enter pushes EBP at the stack size (4 bytes) and
# sets all of EBP. SDM ENTER, OperandSize = 16: Push(BP); BP <- FrameTemp;
# ESP <- ESP - AllocSize.
def test_enter_with_16_bit_operand_size_pushes_bp():
    case = case_from_hex("66c8620000", cpl=3, ebp=0xABCDCBC8)
    for out in each_run(case):
        esp = STACK_START - 2 - 0x62
        assert out.event == "end" and out.regs[4] == esp
        assert out.regs[5] == 0xABCD0000 | (STACK_START - 2)
        at = STACK_START - 2 - STACK
        assert out.stack[at:at + 2] == bytes.fromhex("c8cb")


# --- SLDT/STR/SMSW to a 32-bit register -----------------------------------------------------------
# Found at CPL 0 (sldt ebp): the soft CPU wrote 16 bits and kept the upper
# half; KVM zero-extends, as every processor since the P6 does (the SDM
# leaves it undefined on the Pentium only) and AMD documents. 16-bit forms
# keep the upper half.
def test_sldt_str_smsw_to_a_32_bit_register_zero_extend():
    case = case_from_hex("0f00c5" "0f00cd" "660f00cb" "0f01e0", cpl=0, ebp=0x10000, eax=0x55550000,
                         ecx=0x12345678, ebx=0xABCDEF01)
    for (blocks, paging), out in zip(RUNS, each_run(case)):
        assert out.event == "end"
        assert out.regs[5] == 0x28 and out.regs[1] == 0x12345678     # EBP: STR r32 last
        assert out.regs[3] == 0xABCD0028                              # STR bx
        assert out.regs[0] == 0x11 | (0x80000000 if paging else 0)     # SMSW eax: CR0


# --- a read-modify-write whose write faults changes nothing ------------------------------------
# Found at CPL 3 (mov es,0x63 - a readable conforming code segment; shrd
# es:[m],bp,15): KVM raised #GP(0) with the flags as they were, the soft CPU
# with the SHRD flags. Every RMW instruction computed its flags before the
# write that faulted. SDM: a fault leaves the state as before the
# instruction. DS = 0x53 is the harness's read-only ring-3 data segment.
RMW_FORMS = ["0105" "00a00000", "800d" "00a00000" "05", "661115" "00a00000", "ff05" "00a00000",
             "fe0d" "00a00000", "f71d" "00a00000", "d125" "00a00000", "c12d" "00a00000" "05",
             "d315" "00a00000", "0fab05" "00a00000", "0fba2d" "00a00000" "05", "0fc105" "00a00000",
             "0fb105" "00a00000", "0fa405" "00a00000" "05", "0fad05" "00a00000"]
READ_ONLY_DS = "b853000000" "8ed8"


@pytest.mark.parametrize("form", RMW_FORMS)
def test_a_rmw_whose_write_faults_leaves_the_flags(form):
    case = case_from_hex(READ_ONLY_DS + form, cpl=3, eflags=0x2, eax=0x7FFFFFFF, ecx=3)
    out = soft(case, blocks=False)
    assert (out.event, out.vector, out.error_code, out.eip) == ("exception", 13, 0, CODE + 7)
    assert out.eflags == 0x2 | RF


# Found by the next campaign: the first version of that fix also checked a
# memory SOURCE for writing (ADD reg, cs:[m] raised #GP(0)).
@pytest.mark.parametrize("form", ["2e020502a00000", "2e6633546458", "0305" "00a00000",
                                  "2e0fbc05" "00a00000", "0fa305" "00a00000"])
def test_a_memory_source_is_not_checked_for_writing(form):
    for out in each_run(case_from_hex(READ_ONLY_DS + form, cpl=3)):
        assert out.event == "end"


@pytest.mark.parametrize("form", ["0105" "00a00000", "d125" "00a00000", "0fab0d" "00a00000"])
def test_a_rmw_into_a_read_only_page_faults_with_the_flags_unchanged(form):
    import struct
    from ringvisor.difftest.world import DATA, PT
    runner = SoftRunner(paging=True, blocks=False)
    image = bytearray(runner.image)
    struct.pack_into("<I", image, PT + 4 * (DATA >> 12), DATA | 5)     # user, read-only
    runner.image = bytes(image)
    case = case_from_hex(form, cpl=3, eflags=0x2, eax=0x7FFFFFFF, ecx=3)
    try:
        out = runner.run(case, case.program())
    finally:
        runner.close()
    assert (out.event, out.vector, out.error_code, out.eip) == ("exception", 14, 7, CODE)
    assert out.eflags == 0x2 | RF


# Compiled blocks had the same bug in their inlined ALU ops and shifts
# (fixed by the trace compiler, 258e10a).
@pytest.mark.parametrize("form", ["0105" "00a00000", "800d" "00a00000" "05", "d125" "00a00000",
                                  "c12d" "00a00000" "05"])
def test_a_rmw_whose_write_faults_leaves_the_flags_in_a_block(form):
    out = soft(case_from_hex(READ_ONLY_DS + form, cpl=3, eflags=0x2, eax=0x7FFFFFFF), blocks=True)
    assert (out.event, out.vector) == ("exception", 13) and out.eflags == 0x2 | RF


REGRESSIONS = [case_from_hex(code, cpl=cpl) for code, cpl, _ in RF_FAULTS] + [
    case_from_hex("cc", cpl=3),
    case_from_hex("01d80f21c021c0", cpl=3, eflags=0x24D6, eax=0x1234, ebx=0x7FFFFFFF),
    case_from_hex("c1e9070f20ec21f0", cpl=3, eflags=0x24D6, ecx=0x7FFF),
    case_from_hex("d4cb", cpl=3, eax=0x80007B32), case_from_hex("d5c2", cpl=0, eax=0x8000CEFF),
    case_from_hex("66c8620000", cpl=3, ebp=0xABCDCBC8),
    case_from_hex("0f00c50f00cd660f00cb", cpl=0, ebp=0x10000, ebx=0xABCDEF01),
    case_from_hex("bf600000008ec726660fac2d07a400000f", cpl=3, eflags=0x6602),
] + [case_from_hex(READ_ONLY_DS + form, cpl=3, eax=0x7FFFFFFF, ecx=3) for form in RMW_FORMS] + [
    case_from_hex("2e020502a00000", cpl=3), case_from_hex("2e6633546458", cpl=0)]


@pytest.fixture(scope="module")
def harness():
    h = Harness()
    yield h
    h.close()


@pytest.mark.kvm
@pytest.mark.parametrize("case", REGRESSIONS, ids=lambda c: f"cpl{c.cpl}-{c.nodes[0].code.hex()}")
def test_regressions_agree_with_kvm(harness, case):
    verdict = harness.check(case)
    assert not verdict.divergences, "\n\n".join(verdict.divergences)

