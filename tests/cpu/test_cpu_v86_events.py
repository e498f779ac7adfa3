"""Interrupts and exceptions out of virtual-8086 mode to a ring-0 handler
(SDM 20.3.1.1, INT n INTERRUPT-FROM-VIRTUAL-8086-MODE): the frame with GS,
FS, DS, ES, the gates v86 mode may not use, and IRET back (SDM IRET,
RETURN-TO-VIRTUAL-8086-MODE) with its faults. Interpreter and compiled traces."""
import struct

import pytest

from ringvisor.exits import Fault, Halt
from cpu_rig import CODE, IDT, KCODE, KDATA, STACK0, TSS, Pic, asm, desc, needs_as
from v86_rig import (IF, KCODE_CONFORMING, KCODE_RING1, NT, RF, TF, V86_CS, V86_DS, V86_ES, V86_FS,
                     V86_GS, V86_IP, V86_SP, V86_SS, VM, both, frame, handler_at, v86_rig)

pytestmark = needs_as


# --- interrupts and exceptions from v86 -------------------------------------------
@both
def test_int_n_frame_through_ring0_interrupt_gate(blocks):
    rig = v86_rig("int 0x21", blocks, iopl=3, extra_flags=IF | NT)
    e = rig.run()
    assert isinstance(e, Halt), e
    c = rig.cpu
    assert c.eip == handler_at(0x21) + 1
    eip, cs, fl, esp, ss, es, ds, fs, gs = frame(rig, 9)
    assert (eip, cs, esp, ss, es, ds, fs, gs) == (V86_IP + 2, V86_CS, V86_SP, V86_SS, V86_ES,
                                                   V86_DS, V86_FS, V86_GS)
    assert fl & (VM | IF | NT) == VM | IF | NT
    assert not c.flags & (VM | TF | NT | RF | IF)          # interrupt gate: IF cleared
    assert c.segs[1].selector == KCODE and c.segs[2].selector == KDATA


@both
def test_trap_gate_keeps_if(blocks):
    rig = v86_rig("int 0x22", blocks, iopl=3, extra_flags=IF)
    rig.write(IDT + 8 * 0x22 + 5, bytes([0xEF]))            # P, DPL 3, 32-bit trap gate
    assert isinstance(rig.run(), Halt)
    assert rig.cpu.flags & IF


@both
def test_gp_with_error_code_and_iret_back_to_v86(blocks):
    # The monitor's #GP handler emulates CLI (IOPL 0): skips it, clears the
    # virtual IF in the image, and IRETs back to v86 mode.
    gp = """
        add esp, 4
        inc dword ptr [esp]
        and dword ptr [esp + 8], 0xFFFFFDFF
        or dword ptr [esp + 8], 0x40       # ZF as a mark that the monitor ran
        iretd
    """
    code = "cli\nmov ax, ds\nmov bx, sp\nint3"
    rig = v86_rig(code, blocks, iopl=0, extra_flags=IF, handlers={13: gp})
    assert isinstance(rig.run(), Halt)
    c = rig.cpu
    assert c.eip == handler_at(3) + 1
    eip, cs, fl, esp, ss, es, ds, fs, gs = frame(rig, 9)
    assert (eip, cs) == (V86_IP + 6, V86_CS) and fl & VM and not fl & IF and fl & 0x40
    assert c.r[0] & 0xFFFF == V86_DS and c.r[3] & 0xFFFF == V86_SP
    assert (es, ds, fs, gs) == (V86_ES, V86_DS, V86_FS, V86_GS)


@both
def test_page_fault_from_v86(blocks):
    code = "mov ax, 0x0800\nmov ds, ax\nmov byte ptr [0x10], 1\nint3"     # linear 0x8010
    rig = v86_rig(code, blocks, iopl=3)
    rig.identity_paging()
    rig.enable_paging()
    rig.set_pte(0x8000, 0)
    assert isinstance(rig.run(), Halt)
    c = rig.cpu
    assert c.eip == handler_at(14) + 1 and c.cr2 == 0x8010
    code_, eip, cs, fl = frame(rig, 4)
    assert code_ == 0b110 and eip == V86_IP + 5 and cs == V86_CS and fl & VM | RF == fl & (VM | RF)
    assert fl & RF                                    # a fault pushes RF=1


@both
@pytest.mark.parametrize("target", ["conforming", "ring1"])
def test_gate_to_conforming_or_nonzero_dpl_segment_gp(target, blocks):
    rig = v86_rig("int 0x21", blocks, iopl=3)
    sel = KCODE_CONFORMING if target == "conforming" else KCODE_RING1
    rig.set_idt(0x21, 0, dpl=3, sel=sel)
    assert isinstance(rig.run(), Halt)
    assert rig.cpu.eip == handler_at(13) + 1
    assert frame(rig, 1)[0] == sel                   # #GP(selector), EXT=0 for INT n


@both
def test_exception_to_bad_gate_sets_ext(blocks):
    rig = v86_rig("cli", blocks, iopl=0)
    rig.set_idt(13, 0, dpl=0, sel=KCODE_RING1)
    rig.intercept(13)
    e = rig.run()
    assert isinstance(e, Fault) and e.vector == 13
    # The #GP from CLI cannot be delivered: the second #GP names the selector with EXT.
    rig2 = v86_rig("cli", blocks, iopl=0)
    rig2.set_idt(13, 0, dpl=0, sel=KCODE_RING1)
    rig2.set_idt(8, handler_at(8))
    assert isinstance(rig2.run(), Halt)
    # #GP while delivering #GP is a double fault.
    assert rig2.cpu.eip == handler_at(8) + 1 and frame(rig2, 1)[0] == 0


@both
def test_16bit_gate_from_v86_pushes_words(blocks):
    rig = v86_rig("int 0x23", blocks, iopl=3)
    rig.write(0xF000, b"\xf4")                             # a 16-bit gate's offset is 16 bits
    rig.set_idt(0x23, 0xF000, type_=0x6, dpl=3)              # 16-bit interrupt gate
    assert isinstance(rig.run(), Halt)
    words = struct.unpack("<9H", rig.mem.read(rig.cpu.r[4], 18))
    assert words[:2] == (V86_IP + 2, V86_CS) and words[3:] == (V86_SP, V86_SS, V86_ES, V86_DS,
                                                              V86_FS, V86_GS)
    assert rig.cpu.r[4] == STACK0 - 18


@both
def test_external_interrupt_from_v86_ignores_the_gate_dpl(blocks):
    pic = Pic()
    rig = v86_rig("inc ax\njmp .-1", blocks, iopl=0, extra_flags=IF, gate_dpl={0x20: 0},
                  interrupts=pic)
    assert not isinstance(rig.run(500), Halt)
    assert rig.cpu.flags & VM
    pic.vector = 0x20
    assert isinstance(rig.run(), Halt)
    c = rig.cpu
    assert c.eip == handler_at(0x20) + 1 and not c.flags & (VM | IF)
    eip, cs, fl, esp, ss, es, ds, fs, gs = frame(rig, 9)
    assert cs == V86_CS and eip in (V86_IP, V86_IP + 1) and fl & (VM | IF) == VM | IF
    assert not fl & RF and (esp, ss, gs) == (V86_SP, V86_SS, V86_GS)


@both
def test_iret_to_v86_beyond_0xffff_is_gp0_in_protected_mode(blocks):
    rig = v86_rig("int3", blocks, iopl=3)
    # The kernel's IRET frame with EIP 0x10000: #GP(0) at the IRET, at CPL 0.
    kernel = (f"push 0\npush 0\npush 0\npush 0\npush {V86_SS}\npush {V86_SP}\n"
              f"push {0x20002 | 0x3000}\npush {V86_CS}\npush 0x10000\niretd")
    rig.protected(kernel)
    rig.intercept(13)
    e = rig.run()
    assert isinstance(e, Fault) and (e.vector, e.error_code) == (13, 0)
    c = rig.cpu
    assert not c.flags & VM and c.cpl == 0 and c.r[4] == STACK0 - 36
    assert c.eip == CODE + len(asm(kernel)) - 1                # at the IRET


@both
def test_iret_to_v86_past_the_stack_limit_is_ss0(blocks):
    rig = v86_rig("int3", blocks, iopl=3)
    # Only EIP, CS, EFLAGS below the top of a 64 KiB-limited ring-0 stack.
    rig.gdt[11] = desc(0, 0xFFFF, 0x3, g=False)                 # 0x58: data, limit 0xFFFF
    rig.flush_gdt()
    rig.protected(f"mov ax, 0x58\nmov ss, ax\nmov esp, 0x10000 - 12\npush {V86_IP}\n"
                  f"mov dword ptr [esp+4], {V86_CS}\nmov dword ptr [esp+8], 0x23002\n"
                  "pop eax\nsub esp, 4\niretd")
    rig.intercept(12)
    e = rig.run()
    assert isinstance(e, Fault) and (e.vector, e.error_code) == (12, 0)
    assert not rig.cpu.flags & VM and rig.cpu.cpl == 0


@both
def test_a_fault_while_leaving_v86_rolls_everything_back(blocks):
    rig = v86_rig("mov ax, 7\nint 0x21", blocks, iopl=3)
    rig.mem.write(TSS + 8, b"\0\0")                            # SS0 null
    rig.intercept(10)
    e = rig.run()
    assert isinstance(e, Fault) and (e.vector, e.error_code) == (10, 0)   # #TS(EXT=0) for INT n
    c = rig.cpu
    assert c.flags & VM and c.cpl == 3 and not c.code32 and c.eip == V86_IP + 3
    assert c.segs[1].selector == V86_CS and c.segs[3].selector == V86_DS
    assert c.r[4] & 0xFFFF == V86_SP
