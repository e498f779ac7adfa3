"""Privileged instructions fault above CPL 0; sensitive ones do not (the
x86 virtualization hole)."""
import struct

import pytest

from ringvisor.exits import Fault, Halt
from cpu_rig import CODE, GDT, IDT, Rig, needs_as, asm

pytestmark = needs_as

PRIVILEGED = ["hlt", "lgdt [0x5000]", "lidt [0x5000]", "lldt ax", "ltr ax", "lmsw ax",
              "mov cr0, eax", "mov eax, cr0", "mov cr3, eax", "mov eax, dr7", "invlpg [0]",
              "rdmsr", "wrmsr", "clts", "wbinvd", "invd"]
IOPL_SENSITIVE = ["cli", "sti", "in al, 0x60", "out 0x80, al", "in eax, dx", "insb", "outsb"]


@pytest.mark.parametrize("insn", PRIVILEGED + IOPL_SENSITIVE)
@pytest.mark.parametrize("cpl", [1, 3])
def test_gp_above_cpl0(insn, cpl):
    rig = Rig()
    rig.protected(f"{insn}\nhlt", cpl=cpl)
    rig.intercept(13)
    e = rig.run()
    assert isinstance(e, Fault) and e.vector == 13 and e.error_code == 0, (insn, e)
    assert rig.cpu.eip == CODE                         # fault: EIP at the instruction


@pytest.mark.parametrize("insn", ["sgdt [0x6000]", "sidt [0x6000]", "smsw ax", "str ax",
                                  "sldt ax", "pushfd", "mov ax, cs", "mov ax, ss", "lar eax, ecx",
                                  "lsl eax, ecx", "verr cx", "verw cx"])
def test_sensitive_run_at_cpl3(insn):
    rig = Rig()
    rig.protected(f"{insn}\nint3", cpl=3, ecx=0x23)
    rig.intercept(3, 13, 6)
    e = rig.run()
    assert isinstance(e, Fault) and e.vector == 3, (insn, e)


def test_sgdt_and_smsw_reveal_real_values_at_cpl3():
    rig = Rig()
    rig.protected("sgdt [0x6000]\nsidt [0x6010]\nsmsw ax\nmov bx, cs\nmov cx, ss\nint3", cpl=3)
    rig.intercept(3)
    rig.run()
    assert rig.mem.read_u16(0x6000) == 16 * 8 - 1 and rig.u32(0x6002) == GDT
    assert rig.u32(0x6012) == IDT
    c = rig.cpu
    assert c.r[0] & 0xFFFF == c.cr0 & 0xFFFF and c.r[0] & 1
    assert c.r[3] & 3 == 3 and c.r[1] & 3 == 3             # MOV from CS/SS shows the RPL


def test_popf_hole_keeps_if_and_iopl():
    rig = Rig()
    # pushed value: IF=0, IOPL=3, CF=1
    rig.protected("push 0x3003\npopfd\npushfd\npop eax\nint3", cpl=3, eflags=0x202)
    rig.intercept(3)
    rig.run()
    c = rig.cpu
    assert c.flags & 0x200 and (c.flags >> 12) & 3 == 0 and c.flags & 1
    assert c.r[0] & 0x200 and not c.r[0] & 0x3000          # PUSHF shows the real flags


def test_popf_at_cpl0_changes_if_and_iopl():
    rig = Rig()
    rig.protected("push 0x3003\npopfd\nhlt", cpl=0, eflags=0x202)
    assert isinstance(rig.run(), Halt)
    assert not rig.cpu.flags & 0x200 and rig.cpu.iopl == 3


def test_cli_allowed_when_iopl_permits():
    rig = Rig()
    rig.protected("cli\nint3", cpl=3, eflags=0x3202)
    rig.intercept(3)
    rig.run()
    assert not rig.cpu.flags & 0x200


def test_io_bitmap_grants_a_port():
    rig = Rig()
    rig.protected("in al, 0x42\nout 0x43, al\nint3", cpl=3)
    from cpu_rig import TSS
    rig.write(TSS + 0x68 + 8, b"\xf3")                      # ports 0x42, 0x43 allowed
    rig.intercept(3, 13)
    e = rig.run()
    assert e.vector == 3
    rig.protected("in ax, 0x43\nint3", cpl=3)               # 0x43-0x44: 0x44 denied
    rig.write(TSS + 0x68 + 8, b"\xf3")
    e = rig.run()
    assert e.vector == 13


def test_rdtsc_honours_cr4_tsd():
    rig = Rig()
    rig.protected("rdtsc\nint3", cpl=3)
    rig.intercept(3, 13)
    assert rig.run().vector == 3
    rig.protected("rdtsc\nint3", cpl=3)
    rig.cpu.cr4 = 4
    assert rig.run().vector == 13


def test_lar_lsl_verr_verw_rules():
    rig = Rig()
    code = """
        mov ecx, 0x08
        lar eax, ecx      # ring-0 code from ring 3: not visible -> ZF=0
        setz bl
        mov ecx, 0x23
        lar eax, ecx
        setz bh
        lsl edx, ecx
        verw cx
        setz cl
        mov esi, 0x1B
        verr si
        setz ch
        int3
    """
    rig.protected(code, cpl=3)
    rig.intercept(3)
    rig.run()
    r = rig.cpu.r
    assert r[3] & 0xFF == 0 and (r[3] >> 8) & 0xFF == 1
    assert r[0] == 0x00CFF300 and r[2] == 0xFFFFFFFF
    assert r[1] & 0xFF == 1 and (r[1] >> 8) & 0xFF == 1


def test_ud_on_garbage_and_bad_lock():
    for code in (b"\x0f\xff", b"\xf0\x01\xc0", b"\x8d\xc0", b"\x0f\x0b", b"\xf0\x90"):
        rig = Rig()
        rig.protected(code + b"\xf4")
        rig.intercept(6)
        e = rig.run()
        assert isinstance(e, Fault) and e.vector == 6, code
    rig = Rig()
    rig.protected(b"\xf0\x01\x05\x00\x60\x00\x00\xf4")      # lock add [0x6000], eax: legal
    assert isinstance(rig.run(), Halt)


def test_the_fpu_is_reported_and_cr0_em_hides_it():
    """CPUID.1.EDX.FPU = 1 (a Pentium II with its x87); with CR0.EM set an
    escape is #NM (SDM vol. 3 table 2-2), the kernel's cue to emulate."""
    rig = Rig()
    rig.protected("mov eax, 1\ncpuid\nfninit\nhlt")
    rig.cpu.cr0 |= 4                                        # EM
    rig.intercept(7)
    e = rig.run()
    assert e.vector == 7 and rig.cpu.r[2] & 1
    assert rig.cpu.r[0] >> 8 & 0xF == 6                     # family 6


def test_a_cpu_without_an_fpu_raises_ud_or_nm():
    rig = Rig()
    rig.cpu.fpu = None
    rig.protected("fninit\nhlt")
    rig.intercept(6, 7)
    assert rig.run().vector == 6                            # no FPU, EM clear: #UD
    rig.protected("fninit\nhlt")
    rig.cpu.cr0 |= 4
    assert rig.run().vector == 7


def test_fpu_arithmetic_through_the_cpu():
    """The escapes reach cpu/x87 with their memory operands: 1/3 stored as
    a double, FNSTSW AX, FCOMI setting EFLAGS."""
    rig = Rig()
    rig.protected("fninit\nfld1\nfidiv dword ptr [0x6000]\nfst qword ptr [0x6008]\n"
                  "fnstsw ax\nfld1\nfcomip st, st(1)\nhlt")
    rig.write(0x6000, struct.pack("<i", 3))
    rig.run()
    assert struct.unpack("<d", rig.mem.read(0x6008, 8))[0] == 1 / 3
    assert rig.cpu.r[0] & 0x3800 == 0x3800                  # TOP = 7 after one push
    assert rig.cpu.flags & 1 == 0 and rig.cpu.flags & 0x40 == 0   # 1 > 1/3: CF = ZF = 0
