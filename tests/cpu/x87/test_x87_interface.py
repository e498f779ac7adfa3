"""The interface the CPU calls (execute) and what silicon cannot show from a
64-bit user process: #NM from CR0.EM/TS/MP, #MF versus FERR#/IGNNE# by CR0.NE,
#UD for encodings outside the table, the real-mode environment layouts and the
16-bit protected layout (SDM vol. 1 figures 8-9 to 8-12)."""
from __future__ import annotations

import struct

import pytest

from ringvisor.cpu.x87 import DONE, FERR, MF, NM, UD, Fpu, execute, mnemonic
from ringvisor.cpu.x87 import float80 as f80
from ringvisor.cpu.x87.silicon.runner import Buffer, Context

CR0_MP, CR0_EM, CR0_TS, CR0_NE = 2, 4, 8, 0x20
FLDZ = (0xD9, 0xEE)
FWAIT = (0x9B, 0)


def run(fpu, insn, cr0=CR0_MP | CR0_NE | 0x11, mem=None, **ctx):
    context = Context(cr0=cr0, **ctx)
    return execute(fpu, insn[0], insn[1], mem, context), context


@pytest.mark.parametrize("cr0,esc,wait", [
    (0, DONE, DONE), (CR0_EM, NM, DONE), (CR0_TS, NM, DONE), (CR0_MP, DONE, DONE),
    (CR0_MP | CR0_TS, NM, NM), (CR0_MP | CR0_EM, NM, DONE), (CR0_EM | CR0_TS, NM, DONE),
])
def test_device_not_available(cr0, esc, wait):
    """SDM vol. 3 table 2-2: ESC faults on EM or TS; WAIT only on MP and TS."""
    fpu = Fpu()
    assert run(fpu, FLDZ, cr0)[0] == esc
    assert run(fpu, FWAIT, cr0)[0] == wait


def _pending_fpu():
    fpu = Fpu()
    fpu.cw = 0x037E                     # IE unmasked
    fpu.push(f80.INDEFINITE & ~f80.QUIET_BIT | 1)                     # an SNaN
    execute(fpu, 0xD9, 0xFA, None, Context())                         # FSQRT: #IA
    assert fpu.sw & 0x81 == 0x81
    return fpu


def test_pending_exception_is_mf_with_ne_and_ferr_without():
    fpu = _pending_fpu()
    before = fpu.copy()
    assert run(fpu, FWAIT, CR0_NE | CR0_MP)[0] == MF
    assert run(fpu, FLDZ, CR0_NE | CR0_MP)[0] == MF
    assert fpu == before                                     # nothing executed
    assert run(fpu, FLDZ, CR0_MP)[0] == FERR                 # PC: IRQ13 via FERR#
    fpu.ignne = True                                         # the handler wrote port 0xF0
    assert run(fpu, FLDZ, CR0_MP)[0] == DONE


def test_non_waiting_instructions_ignore_pending_exceptions():
    fpu = _pending_fpu()
    mem = Buffer(bytearray(108), 0x1000, 0x10)
    assert run(fpu, (0xDF, 0xE0))[0] == DONE                 # FNSTSW AX
    assert run(fpu, (0xDD, 0x30), mem=mem)[0] == DONE        # FNSAVE
    assert fpu.sw == 0 and fpu.cw == 0x037F


def test_undefined_encodings_are_ud():
    fpu = Fpu()
    for opcode, modrm in [(0xD9, 0x08), (0xD9, 0xD1), (0xD9, 0xE2), (0xDB, 0x08),
                          (0xDB, 0x20), (0xDA, 0xE8), (0xDE, 0xD8), (0xDF, 0xF8)]:
        assert run(fpu, (opcode, modrm))[0] == UD, (hex(opcode), hex(modrm))
    assert mnemonic(0xDE, 0xF9) == "FDIVP ST(1),ST(0)"
    assert mnemonic(0xDD, 0x30) == "FNSAVE m94/108byte"


def test_pointers_recorded_for_non_control_instructions():
    fpu = Fpu()
    mem = Buffer(bytearray(16), 0x1234, 0x2B)
    mem.data[0:8] = struct.pack("<d", 2.5)
    run(fpu, (0xDD, 0x05), mem=mem, cs=0x23, eip=0x8000)      # FLD m64fp
    assert (fpu.fip, fpu.fcs, fpu.fop, fpu.fdp, fpu.fds) == (0x8000, 0x23, 0x505, 0x1234, 0x2B)
    run(fpu, (0xD9, 0x3D), mem=mem, cs=0x23, eip=0x9000)      # FNSTCW: a control instruction
    assert fpu.fip == 0x8000
    run(fpu, (0xD9, 0xE1), cs=0x23, eip=0x9100)               # FABS: no memory operand
    assert (fpu.fip, fpu.fop, fpu.fdp) == (0x9100, 0x1E1, 0x1234)


def _state():
    fpu = Fpu()
    fpu.cw, fpu.top, fpu.sw = 0x0A7F, 5, 0x4123
    fpu.fip, fpu.fcs, fpu.fop, fpu.fdp, fpu.fds = 0x12345, 0x1000, 0x5A5, 0x6789A, 0x2000
    fpu.set_st(0, f80.ONE)
    fpu.set_st(1, 0)
    fpu.set_st(2, f80.POS_INF)
    return fpu


def test_env_16bit_real_mode_layout():
    """Figure 8-11: IP and DP as 20-bit linear addresses, FOP beside IP[19:16]."""
    fpu = _state()
    mem = Buffer(bytearray(14), 0, 0)
    run(fpu, (0xD9, 0x30), mem=mem, o32=False, protected=False)          # FNSTENV
    words = struct.unpack("<7H", mem.data)
    ip = (0x1000 << 4) + 0x12345
    dp = (0x2000 << 4) + 0x6789A
    assert words[0] == 0x0A7F and words[1] == 0x4123 | 5 << 11
    assert words[2] == fpu.tag_word() and fpu.tag_word() == 0x93FF       # R7 special, R6 zero, R5 valid
    assert words[3] == ip & 0xFFFF and words[4] == (ip >> 16 & 0xF) << 12 | 0x5A5
    assert words[5] == dp & 0xFFFF and words[6] == (dp >> 16 & 0xF) << 12


def test_env_32bit_real_mode_layout_round_trip():
    """Figure 8-10; FLDENV gives back the linear pointers (CS/DS zero)."""
    fpu = _state()
    mem = Buffer(bytearray(28), 0, 0)
    run(fpu, (0xD9, 0x30), mem=mem, protected=False)
    words = struct.unpack("<7I", mem.data)
    ip, dp = 0x10000 + 0x12345, 0x20000 + 0x6789A
    assert words[3] & 0xFFFF == ip & 0xFFFF and words[4] == (ip >> 16) << 12 | 0x5A5
    assert words[5] & 0xFFFF == dp & 0xFFFF and words[6] == (dp >> 16) << 12
    other = Fpu()
    run(other, (0xD9, 0x20), mem=mem, protected=False)                   # FLDENV
    assert (other.fip, other.fop, other.fdp, other.fcs) == (ip, 0x5A5, dp, 0)


def test_save_restore_16bit_protected_round_trip():
    fpu = _state()
    mem = Buffer(bytearray(94), 0, 0)
    saved = fpu.copy()
    run(fpu, (0xDD, 0x30), mem=mem, o32=False)                           # FNSAVE
    assert fpu.cw == 0x037F and fpu.valid == 0                           # FNINIT after
    assert struct.unpack_from("<7H", mem.data) == (
        0x0A7F, saved.status_word(), saved.tag_word(), 0x2345, 0x1000, 0x789A, 0x2000)
    run(fpu, (0xDD, 0x20), mem=mem, o32=False)                           # FRSTOR
    assert fpu.regs == saved.regs and fpu.valid == saved.valid and fpu.top == 5
    assert fpu.status_word() == saved.status_word()


def test_fnstsw_ax_and_fninit():
    fpu = _state()
    status, ctx = run(fpu, (0xDF, 0xE0))
    assert ctx.ax == fpu.status_word() == 0x4123 | 5 << 11
    run(fpu, (0xDB, 0xE3))
    assert (fpu.cw, fpu.status_word(), fpu.tag_word(), fpu.fip, fpu.fdp) == (0x037F, 0, 0xFFFF, 0, 0)
