"""Virtual-mode extensions (CR4.VME; SDM vol. 3A 20.3, Table 20-2; vol. 2
CLI, STI, PUSHF, POPF, IRET, INT n): in virtual-8086 mode below IOPL 3 the
virtual interrupt flag VIF stands in for IF, VIP makes an instruction that
would set it #GP(0), and INT n goes one of six ways by VME, IOPL and the
TSS's interrupt redirection bitmap. Interpreter and compiled traces."""
import struct

import pytest

from ringvisor.cpu.semantics import vme
from ringvisor.exits import Halt
from cpu_rig import TSS, Rig, asm, needs_as
from v86_rig import IF, TF, V86_CS, V86_IP, V86_SP, V86_SS, VM, both, frame, handler_at, lin, v86_rig

pytestmark = needs_as

VIF, VIP, IOPL3 = 0x80000, 0x100000, 0x3000
CR4_VME = 1
REDIRECT_CS, REDIRECT_IP = 0x2800, 0x0010        # the 8086 program's own handler (IVT entry)


def vme_rig(code: str, blocks: bool, iopl: int = 0, extra_flags: int = 0, vme_on: bool = True,
            **kw):
    rig = v86_rig(code, blocks, iopl=iopl, extra_flags=extra_flags, **kw)
    rig.cpu.cr4 |= CR4_VME if vme_on else 0
    return rig


def gp_at(rig, ip: int) -> bool:
    """The CPU took #GP(0) at V86_CS:ip (the ring-0 handler halted)."""
    code, eip, cs = frame(rig, 3)
    return rig.cpu.eip == handler_at(13) + 1 and (code, eip, cs) == (0, ip, V86_CS)


# --- CPUID and CR4 ----------------------------------------------------------------------
def test_cpuid_reports_vme_and_cr4_takes_vme_and_pvi():
    rig = Rig()
    rig.protected("mov eax, 1\ncpuid\nmov esi, edx\nmov eax, cr4\nor eax, 3\nmov cr4, eax\nhlt")
    assert isinstance(rig.run(), Halt)
    assert rig.cpu.r[6] & 2 and rig.cpu.cr4 & 3 == 3


# --- CLI, STI --------------------------------------------------------------------------------
@both
def test_cli_sti_change_vif_not_if(blocks):
    rig = vme_rig("cli\npushf\npop ax\nsti\npushf\npop bx\nint3", blocks, extra_flags=IF | VIF)
    assert isinstance(rig.run(), Halt)
    c = rig.cpu
    # The 16-bit PUSHF image: IF = VIF, IOPL = 3 (the program believes it may).
    assert c.r[0] & (IF | IOPL3) == IOPL3 and c.r[3] & (IF | IOPL3) == IF | IOPL3
    fl = frame(rig, 3)[2]
    assert fl & IF and fl & VIF and fl >> 12 & 3 == 0      # real IF and IOPL untouched


@both
def test_without_vme_cli_is_gp(blocks):
    rig = vme_rig("cli\nint3", blocks, vme_on=False)
    assert isinstance(rig.run(), Halt)
    assert gp_at(rig, V86_IP)


@both
def test_sti_with_vip_is_gp_and_cli_is_not(blocks):
    rig = vme_rig("cli\nsti\nint3", blocks, extra_flags=VIP | VIF)
    assert isinstance(rig.run(), Halt)
    assert gp_at(rig, V86_IP + 1)
    assert not frame(rig, 4)[3] & VIF                       # the CLI did clear VIF


# --- PUSHF, POPF, IRET -------------------------------------------------------------------
@both
@pytest.mark.parametrize("ins", ["pushfd", "popfd", "iretd"])
def test_32_bit_forms_are_gp_even_with_vme(ins, blocks):
    rig = vme_rig(f"push 0\npush 0\npush 0\n{ins}\nint3", blocks)
    assert isinstance(rig.run(), Halt)
    assert gp_at(rig, V86_IP + 6)


@both
def test_popf_loads_vif_from_if_and_keeps_if_and_iopl(blocks):
    rig = vme_rig("push 0x3201\npopf\npushf\npop ax\nint3", blocks)
    assert isinstance(rig.run(), Halt)
    fl = frame(rig, 3)[2]
    assert fl & VIF and not fl & IF and fl >> 12 & 3 == 0 and fl & 1    # CF from the image
    assert rig.cpu.r[0] & 0xFFFF == 0x3203                              # IF (= VIF), IOPL 3, CF


@both
@pytest.mark.parametrize("image,flags", [(TF, 0), (IF, VIP)],
                         ids=["tf", "if-while-vip"])
def test_popf_that_would_set_tf_or_vif_while_vip_is_gp(image, flags, blocks):
    rig = vme_rig(f"push {image | 2}\npopf\nint3", blocks, extra_flags=flags)
    assert isinstance(rig.run(), Halt)
    assert gp_at(rig, V86_IP + 3)
    assert frame(rig, 6)[4] == V86_SP - 2                   # nothing popped


@both
def test_iret_loads_vif_and_keeps_if(blocks):
    code = f"push 0x0200\npush 0x{V86_CS:x}\npush OFFSET done\niret\ndone:\npushf\npop ax\nint3"
    rig = vme_rig(code, blocks)
    assert isinstance(rig.run(), Halt)
    fl = frame(rig, 3)[2]
    assert fl & VIF and not fl & IF and rig.cpu.r[0] & IF


@both
def test_iret_at_cpl0_enters_v86_with_vif_and_vip(blocks):
    rig = vme_rig("sti\nint3", blocks, extra_flags=VIF | VIP)
    assert isinstance(rig.run(), Halt)
    assert gp_at(rig, V86_IP)                               # STI while VIP (loaded by the IRET)


# --- INT n: Table 20-2 ----------------------------------------------------------------------
def with_redirection(rig, vector: int, bit: int) -> None:
    """A redirection bitmap below a moved I/O map base (0x88), all bits set but
    `vector`'s = `bit`; the IVT entry for `vector`; the 8086 handler `int3`."""
    bitmap = bytearray(b"\xff" * 32)
    if not bit:
        bitmap[vector >> 3] &= ~(1 << (vector & 7))
    rig.write(TSS + 0x68, bytes(bitmap))
    rig.write(TSS + 102, struct.pack("<H", 0x88))
    rig.write(vector * 4, struct.pack("<HH", REDIRECT_IP, REDIRECT_CS))
    rig.write(lin(REDIRECT_CS, REDIRECT_IP), asm("int3", org=REDIRECT_IP, bits=16))


def test_the_table_is_the_sdms():
    assert vme.METHODS == {(0, True, None): 1, (0, False, None): 2, (1, False, 1): 3,
                           (1, True, 1): 4, (1, True, 0): 5, (1, False, 0): 6}
    assert [vme.ACTIONS[m] for m in range(1, 7)] == [vme.IDT, vme.GP_FAULT, vme.GP_FAULT,
                                                     vme.IDT, vme.REDIRECT, vme.REDIRECT]


@both
@pytest.mark.parametrize("vme_on,iopl,bit,method", [
    (0, 3, 0, 1), (0, 0, 0, 2), (1, 0, 1, 3), (1, 3, 1, 4), (1, 3, 0, 5), (1, 0, 0, 6)])
def test_int_n_by_each_method(vme_on, iopl, bit, method, blocks):
    rig = vme_rig("int 0x21\nint3", blocks, iopl=iopl, vme_on=bool(vme_on),
                  extra_flags=IF | VIF)
    with_redirection(rig, 0x21, bit)
    assert isinstance(rig.run(), Halt)
    c = rig.cpu
    if method in (1, 4):                                    # the IDT's gate, the v86 frame
        assert c.eip == handler_at(0x21) + 1
        eip, cs, fl = frame(rig, 3)
        assert (cs, eip) == (V86_CS, V86_IP + 2) and fl & VM
    elif method in (2, 3):
        assert gp_at(rig, V86_IP)
    else:                                                   # the 8086 handler's INT3, to the IDT
        assert c.eip == handler_at(3) + 1
        eip, cs, fl, sp, ss = frame(rig, 5)
        assert (cs, eip, ss, sp) == (REDIRECT_CS, REDIRECT_IP + 1, V86_SS, V86_SP - 6)
        ip, pushed_cs, image = struct.unpack("<HHH", rig.mem.read(lin(V86_SS, V86_SP - 6), 6))
        assert (pushed_cs, ip) == (V86_CS, V86_IP + 2)
        if method == 5:                                     # FLAGS as they were; IF cleared
            assert image & (IF | IOPL3) == IF | IOPL3 and not fl & IF and fl & VIF
        else:                                               # IOPL 3 and VIF as IF; VIF cleared
            assert image & (IF | IOPL3) == IF | IOPL3 and fl & IF and not fl & VIF


@both
def test_redirected_int_pushes_vif_clear_as_if_clear(blocks):
    rig = vme_rig("int 0x21", blocks, extra_flags=IF)       # VIF clear
    with_redirection(rig, 0x21, 0)
    assert isinstance(rig.run(), Halt)
    image = struct.unpack("<H", rig.mem.read(lin(V86_SS, V86_SP - 2), 2))[0]
    assert image & (IF | IOPL3) == IOPL3


@both
def test_redirection_bitmap_outside_the_tss_is_gp(blocks):
    rig = vme_rig("int 0x21\nint3", blocks)
    rig.write(TSS + 102, struct.pack("<H", 0x10))           # the bitmap would start below the TSS
    assert isinstance(rig.run(), Halt)
    assert gp_at(rig, V86_IP)


@both
def test_int3_and_exceptions_are_never_redirected(blocks):
    rig = vme_rig("int3", blocks, iopl=3)
    with_redirection(rig, 3, 0)
    rig.write(lin(REDIRECT_CS, REDIRECT_IP), b"\xf4")       # would halt in v86 (a #GP)
    assert isinstance(rig.run(), Halt)
    assert rig.cpu.eip == handler_at(3) + 1 and frame(rig, 3)[2] & VM
