"""Virtual-8086 mode (SDM vol. 3A ch. 20; vol. 2 IRET, INT n, IN/OUT, POPF):
entry by IRET, 8086-style segments and the 16-bit limit, the IOPL-sensitive
instructions at IOPL 0 and 3 (without VME: test_cpu_vme.py), the I/O bitmap
and the instructions v86 mode refuses. Events out of v86 mode:
test_cpu_v86_events.py; task switches and VMX: test_cpu_v86_task_vmx.py.
Every test runs on the interpreter and on compiled traces."""
import pytest

from ringvisor.exits import Fault, Halt
from cpu_rig import IDT, STACK0, TSS, TSSSEL, needs_as
from v86_rig import (IF, NT, RF, V86_CS, V86_DS, V86_ES, V86_FS, V86_GS, V86_IP, V86_SP, V86_SS, VM,
                     both, frame, handler_at, lin, v86_rig)

pytestmark = needs_as


# --- entry by IRET ------------------------------------------------------------------
@both
def test_iret_enters_v86_with_8086_segments(blocks):
    rig = v86_rig("mov ax, 0x1234\nint3", blocks, iopl=3)
    assert isinstance(rig.run(), Halt)
    c = rig.cpu
    # INT3 from v86 went through the DPL-3 gate to ring 0: the v86 frame.
    eip, cs, fl, esp, ss, es, ds, fs, gs = frame(rig, 9)
    assert (cs, eip) == (V86_CS, V86_IP + 4)                # after mov ax (3) + int3 (1)
    assert fl & VM and (fl >> 12) & 3 == 3
    assert (esp, ss, es, ds, fs, gs) == (V86_SP, V86_SS, V86_ES, V86_DS, V86_FS, V86_GS)
    assert c.r[0] & 0xFFFF == 0x1234
    assert c.cpl == 0 and not c.flags & VM and c.code32 and c.stack32
    assert c.r[4] == STACK0 - 36
    assert [c.segs[i].selector for i in (0, 3, 4, 5)] == [0, 0, 0, 0]
    assert all(c.segs[i].unusable for i in (0, 3, 4, 5))


@both
def test_segment_loads_and_addressing_are_8086_style(blocks):
    code = """
        mov ax, 0x0100
        mov ds, ax
        mov word ptr [0x0010], 0xBEEF      # linear 0x1010
        mov bx, 0xFFFF
        mov byte ptr [bx], 0x5A            # linear 0x1000 + 0xFFFF
        push ds
        pop es
        mov al, es:[bx]
        mov byte ptr ss:[0xFFFE], 0x77
        int3
    """
    rig = v86_rig(code, blocks, iopl=3)
    assert isinstance(rig.run(), Halt)
    assert rig.mem.read(0x1010, 2) == b"\xef\xbe"
    assert rig.mem.read(0x1000 + 0xFFFF, 1) == b"\x5a"
    assert rig.cpu.r[0] & 0xFF == 0x5A
    assert rig.mem.read(lin(V86_SS, 0xFFFE), 1) == b"\x77"
    es_image, ds_image = frame(rig, 9)[5:7]
    assert (es_image, ds_image) == (0x100, 0x100)


@both
def test_offset_beyond_0xffff_faults_gp0_and_ss0(blocks):
    # The 0x67 prefix is allowed in v86 mode; an offset past the 0xFFFF limit faults.
    rig = v86_rig("mov ebx, 0x10000\nmov al, [ebx]", blocks, iopl=3)
    rig.intercept(13)
    e = rig.run()
    assert isinstance(e, Fault) and (e.vector, e.error_code) == (13, 0)
    assert rig.cpu.flags & VM and rig.cpu.eip == V86_IP + 6
    rig = v86_rig("mov ebp, 0xFFFF\nmov ax, [ebp]", blocks, iopl=3)
    rig.intercept(12)
    e = rig.run()
    assert isinstance(e, Fault) and (e.vector, e.error_code) == (12, 0)


@both
def test_sixteen_bit_address_wraps(blocks):
    # [bx+si] with 16-bit addressing wraps at 64 KiB inside the segment.
    rig = v86_rig("mov bx, 0xFFFF\nmov si, 2\nmov byte ptr [bx+si], 0x99\nint3", blocks, iopl=3)
    assert isinstance(rig.run(), Halt)
    assert rig.mem.read(lin(V86_DS, 1), 1) == b"\x99"


# --- IOPL-sensitive instructions -----------------------------------------------------
SENSITIVE = ["cli", "sti", "pushf", "popf", "int 0x21", "iret"]


@both
@pytest.mark.parametrize("ins", SENSITIVE)
def test_iopl_sensitive_instruction_at_iopl0_gp0(ins, blocks):
    rig = v86_rig(f"push 0\n{ins}\nint3", blocks, iopl=0)
    assert isinstance(rig.run(), Halt)
    c = rig.cpu
    # The #GP handler ran (gate 13) with error code 0 and the v86 frame.
    assert c.eip == handler_at(13) + 1
    code, eip, cs, fl = frame(rig, 4)
    assert code == 0 and (cs, eip) == (V86_CS, V86_IP + 2) and fl & VM


@both
@pytest.mark.parametrize("ins", SENSITIVE)
def test_iopl_sensitive_instruction_at_iopl3_runs(ins, blocks):
    # The IRET pops a frame that returns right after it (IF set); INT 0x21
    # reaches its handler through the DPL-3 gate.
    ret_frame = f"push 0x{V86_CS:x}\npush OFFSET done\n" if ins == "iret" else ""
    code = f"push 0x3202\n{ret_frame}{ins}\ndone:\nint3"
    rig = v86_rig(code, blocks, iopl=3)
    assert isinstance(rig.run(), Halt)
    if ins == "int 0x21":
        assert rig.cpu.eip == handler_at(0x21) + 1
        return
    assert rig.cpu.eip == handler_at(3) + 1
    eip, cs, fl = frame(rig, 3)
    assert fl & VM and (fl >> 12) & 3 == 3 and cs == V86_CS
    assert bool(fl & IF) == (ins in ("sti", "popf", "iret"))


@both
def test_popf_and_iret_in_v86_keep_iopl_and_vm(blocks):
    code = """
        push 0x0002            # IOPL 0, VM clear in the image
        popf
        pushf
        pop ax
        push 0x0002
        push 0x2000
        push OFFSET done
        iret                   # to the int3 after it
    done:
        int3
    """
    rig = v86_rig(code, blocks, iopl=3, extra_flags=IF)
    assert isinstance(rig.run(), Halt)
    assert rig.cpu.r[0] & 0x3000 == 0x3000
    fl = frame(rig, 3)[2]
    assert fl & VM and (fl >> 12) & 3 == 3 and not fl & IF


@both
def test_iret_in_v86_ignores_nt(blocks):
    # In virtual-8086 mode IRET is the 8086 return even with NT=1 (SDM IRET:
    # the VM test comes before the NT test): no task switch.
    code = f"push 0x3202\npush 0x{V86_CS:x}\npush OFFSET done\niret\ndone:\nint3"
    rig = v86_rig(code, blocks, iopl=3, extra_flags=NT)
    assert isinstance(rig.run(), Halt)
    assert rig.cpu.eip == handler_at(3) + 1 and rig.cpu.tr.selector == TSSSEL
    eip, cs, fl = frame(rig, 3)
    assert fl & VM and fl & IF and not fl & NT             # the popped image had NT clear


@both
def test_pushf_clears_vm_and_rf_in_the_image(blocks):
    rig = v86_rig("pushfd\npop eax\nint3", blocks, iopl=3)
    assert isinstance(rig.run(), Halt)
    assert rig.cpu.r[0] & (VM | RF) == 0 and (rig.cpu.r[0] >> 12) & 3 == 3


@both
def test_int3_and_into_are_not_iopl_sensitive(blocks):
    rig = v86_rig("mov al, 0x7F\nadd al, 1\ninto", blocks, iopl=0)
    assert isinstance(rig.run(), Halt)
    assert rig.cpu.eip == handler_at(4) + 1
    rig = v86_rig("int3", blocks, iopl=0)
    assert isinstance(rig.run(), Halt)
    assert rig.cpu.eip == handler_at(3) + 1


@both
def test_int3_through_a_dpl0_gate_is_gp(blocks):
    rig = v86_rig("int3", blocks, iopl=0, gate_dpl={3: 0})
    assert isinstance(rig.run(), Halt)
    assert rig.cpu.eip == handler_at(13) + 1
    assert frame(rig, 1)[0] == 3 * 8 + 2         # the gate's IDT slot, IDT bit


# --- I/O permission bitmap -------------------------------------------------------
def allow_port(rig, port: int) -> None:
    at = TSS + 0x68 + port // 8
    b = rig.mem.read(at, 1)[0] & ~(1 << (port % 8))
    rig.write(at, bytes([b]))


@both
@pytest.mark.parametrize("iopl", [0, 3])
def test_io_consults_the_bitmap_whatever_iopl(iopl, blocks):
    rig = v86_rig("mov dx, 0x80\nmov al, 0x42\nout dx, al\nout 0x81, al\nint3", blocks, iopl=iopl)
    allow_port(rig, 0x80)
    written = []

    class Port:
        def io_read(self, offset, size):
            return 0

        def io_write(self, offset, size, value):
            written.append((0x80 + offset, value))
    rig.ports.register(0x80, 2, Port(), "probe")
    assert isinstance(rig.run(), Halt)
    assert written == [(0x80, 0x42)]
    # OUT 0x81 is denied by the bitmap even at IOPL 3: #GP(0) at it.
    assert rig.cpu.eip == handler_at(13) + 1
    code, eip = frame(rig, 2)
    assert code == 0 and eip == V86_IP + 6


@both
def test_ins_outs_consult_the_bitmap(blocks):
    rig = v86_rig("mov dx, 0x90\nmov si, 0\noutsb\nint3", blocks, iopl=3)
    assert isinstance(rig.run(), Halt)
    assert rig.cpu.eip == handler_at(13) + 1


# --- protected-mode-only instructions ----------------------------------------------
@both
@pytest.mark.parametrize("ins", ["sldt ax", "str ax", "lldt ax", "ltr ax", "lar ax, bx",
                                 "lsl ax, bx", "verr ax", "verw ax", "arpl ax, bx"])
def test_protected_mode_only_instructions_ud(ins, blocks):
    rig = v86_rig(f"{ins}\nint3", blocks, iopl=3)
    assert isinstance(rig.run(), Halt)
    assert rig.cpu.eip == handler_at(6) + 1


@both
@pytest.mark.parametrize("ins", ["hlt", "lgdt [0]", "mov eax, cr0", "clts", "invlpg [0]"])
def test_privileged_instructions_gp0(ins, blocks):
    rig = v86_rig(f"{ins}\nint3", blocks, iopl=3)
    assert isinstance(rig.run(), Halt)
    assert rig.cpu.eip == handler_at(13) + 1 and frame(rig, 1)[0] == 0
