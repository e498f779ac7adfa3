"""Virtual-8086 mode (SDM vol. 3A ch. 20; vol. 2 IRET, INT n, IN/OUT, POPF):
entry by IRET and by a task switch, 8086-style segments and the 16-bit
limit, the IOPL-sensitive instructions at IOPL 0 and 3, the I/O bitmap,
interrupts and exceptions to a ring-0 handler with the virtual-8086 frame,
IRET back, and the gates virtual-8086 mode may not use. Every test runs on
the interpreter and on compiled traces."""
import struct

import pytest

from ringvisor.exits import Fault, Halt
from cpu_rig import (CODE, GDT, IDT, KCODE, KDATA, STACK0, TSS, TSSSEL, Pic, Rig, asm, desc, needs_as)

pytestmark = needs_as

VM, IF, TF, NT, RF = 0x20000, 0x200, 0x100, 0x4000, 0x10000
V86_CS, V86_IP, V86_SS, V86_SP = 0x2000, 0x0100, 0x3000, 0xFFF0
V86_DS, V86_ES, V86_FS, V86_GS = 0x4000, 0x5000, 0x6000, 0x7000
HANDLERS = 0x11000                  # ring-0 handlers, one 16-byte slot per vector
KCODE_CONFORMING, KCODE_RING1 = 0x50, 0x40


def handler_at(vector: int) -> int:
    return HANDLERS + 16 * vector


def v86_rig(v86_code: str, blocks: bool, iopl: int = 0, extra_flags: int = 0,
            handlers: dict[int, str] | None = None, gate_dpl: dict[int, int] | None = None,
            interrupts=None) -> Rig:
    """A ring-0 kernel that IRETs to `v86_code` at V86_CS:V86_IP; every IDT
    vector has a 32-bit interrupt gate to a ring-0 `hlt` unless `handlers`
    gives its code."""
    rig = Rig(interrupts=interrupts)
    rig.cpu.use_blocks = blocks
    rig.standard_gdt()
    rig.gdt[10] = desc(0, 0xFFFFFFFF, 0xF)                 # 0x50 conforming ring-0 code
    rig.flush_gdt()
    rig.write(HANDLERS, b"\xf4" * 16 * 256)                # hlt
    for v, code in (handlers or {}).items():
        rig.write(handler_at(v), asm(code, org=handler_at(v)))
    for v in range(256):
        rig.set_idt(v, handler_at(v), dpl=(gate_dpl or {}).get(v, 3))
    rig.write((V86_CS << 4) + V86_IP, asm(v86_code, org=V86_IP, bits=16))
    flags = 0x2 | VM | iopl << 12 | extra_flags
    rig.protected(f"""
        push {V86_GS}
        push {V86_FS}
        push {V86_DS}
        push {V86_ES}
        push {V86_SS}
        push {V86_SP}
        push {flags}
        push {V86_CS}
        push {V86_IP}
        iretd
    """)
    return rig


def frame(rig, n: int) -> list[int]:
    """`n` dwords at the top of the ring-0 stack."""
    return [rig.u32(rig.cpu.r[4] + 4 * i) for i in range(n)]


def lin(seg: int, off: int) -> int:
    return (seg << 4) + off


both = pytest.mark.parametrize("blocks", [False, True], ids=["interp", "blocks"])


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


# --- entry by task switch ---------------------------------------------------------
TSS_V86, TSS_V86_SEL = 0x3800, 0x58


@both
def test_task_switch_into_v86_task_and_back(blocks):
    rig = Rig()
    rig.cpu.use_blocks = blocks
    rig.standard_gdt()
    rig.gdt[11] = desc(TSS_V86, 0x67, 0x9, s=False, g=False, db=False)
    rig.flush_gdt()
    hi = rig.u32(GDT + TSSSEL + 4)
    rig.mem.write_u32(GDT + TSSSEL + 4, hi | 0x200)            # the current task is busy
    tss = bytearray(0x68)
    struct.pack_into("<II", tss, 0x20, V86_IP, 0x2 | VM | 3 << 12)   # EIP, EFLAGS
    struct.pack_into("<I", tss, 0x28 + 16, V86_SP)                   # ESP
    for i, sel in enumerate((V86_ES, V86_CS, V86_SS, V86_DS, V86_FS, V86_GS)):
        struct.pack_into("<I", tss, 0x48 + 4 * i, sel)
    rig.write(TSS_V86, bytes(tss))
    # The v86 task reads DS:0 and ends with INT 0x30: a task gate back? No:
    # an interrupt gate to ring 0 of its own TSS (SS0:ESP0 from TSS_V86).
    struct.pack_into("<II", tss, 4, STACK0 - 0x2000, KDATA)
    rig.write(TSS_V86, bytes(tss))
    rig.write(lin(V86_DS, 0), b"\x34\x12")
    rig.write(lin(V86_CS, V86_IP), asm("mov ax, [0]\nint 0x30", org=V86_IP, bits=16))
    rig.write(handler_at(0x30), asm("hlt", org=handler_at(0x30)))
    rig.protected("jmp 0x58:0")
    rig.set_idt(0x30, handler_at(0x30), dpl=3)
    assert isinstance(rig.run(), Halt)
    c = rig.cpu
    assert c.tr.selector == TSS_V86_SEL and c.r[0] & 0xFFFF == 0x1234
    eip, cs, fl, esp, ss, es, ds, fs, gs = frame(rig, 9)
    assert c.r[4] == STACK0 - 0x2000 - 36
    assert (eip, cs, esp, ss, es, ds) == (V86_IP + 5, V86_CS, V86_SP, V86_SS, V86_ES, V86_DS)
    assert fl & VM


@both
def test_task_gate_from_v86_saves_vm_in_the_old_tss(blocks):
    rig = v86_rig("mov ax, 0x55\nint 0x40", blocks, iopl=3)
    TSS_B, TSS_B_SEL = 0x3800, 0x58
    rig.gdt[11] = desc(TSS_B, 0x67, 0x9, s=False, g=False, db=False)
    rig.flush_gdt()
    hi = rig.u32(GDT + TSSSEL + 4)
    rig.mem.write_u32(GDT + TSSSEL + 4, hi | 0x200)
    tss = bytearray(0x68)
    struct.pack_into("<II", tss, 0x20, handler_at(0x40), 2)
    struct.pack_into("<I", tss, 0x28 + 16, 0x70000)
    for i, sel in enumerate((KDATA, KCODE, KDATA, KDATA, KDATA, KDATA)):
        struct.pack_into("<I", tss, 0x48 + 4 * i, sel)
    rig.write(TSS_B, bytes(tss))
    rig.write(IDT + 8 * 0x40, struct.pack("<II", TSS_B_SEL << 16, 0xE500))   # task gate, DPL 3
    assert isinstance(rig.run(), Halt)
    c = rig.cpu
    assert c.tr.selector == TSS_B_SEL and not c.flags & VM and c.flags & NT
    saved_eip, saved_flags = rig.u32(TSS + 0x20), rig.u32(TSS + 0x24)
    assert saved_eip == V86_IP + 5 and saved_flags & VM
    assert rig.u32(TSS + 0x48 + 4) & 0xFFFF == V86_CS


# --- CPUID and CR4 ----------------------------------------------------------------------
def test_cpuid_does_not_report_vme_and_cr4_vme_is_reserved():
    rig = Rig()
    rig.protected("mov eax, 1\ncpuid\nmov esi, edx\nmov eax, cr4\nor eax, 1\nmov cr4, eax\nhlt")
    rig.intercept(13)
    e = rig.run()
    assert rig.cpu.r[6] & 2 == 0
    assert isinstance(e, Fault) and e.vector == 13


# --- VMX non-root: a virtual-8086 guest (SDM 26.3.1.2) --------------------------------
def _v86_vmx_guest(code: str):
    from vmx_rig import VmxRig
    from ringvisor.cpu.semantics.segments import v86_segment
    from ringvisor.cpu.vmx.state import set_guest_segment
    rig = VmxRig("hlt")
    rig.write(lin(V86_CS, V86_IP), asm(code, org=V86_IP, bits=16))
    v = rig.vmcs
    for name, sel in (("ES", V86_ES), ("CS", V86_CS), ("SS", V86_SS), ("DS", V86_DS),
                      ("FS", V86_FS), ("GS", V86_GS)):
        set_guest_segment(v, name, v86_segment(sel))
    v["GUEST_RFLAGS"], v["GUEST_RIP"], v["GUEST_RSP"] = 0x2 | VM | 3 << 12, V86_IP, V86_SP
    return rig


def test_vmx_runs_a_v86_guest_and_its_exits_keep_the_v86_state():
    rig = _v86_vmx_guest("mov ax, 0x1234\nmov ds, ax\ncpuid\nmov bx, ds\ncpuid")
    exit = rig.enter()
    assert exit.reason == 10, exit                          # CPUID exits unconditionally
    v = rig.vmcs
    assert v["GUEST_RFLAGS"] & VM and v["GUEST_RIP"] == V86_IP + 5
    assert (v["GUEST_DS_SELECTOR"], v["GUEST_DS_BASE"], v["GUEST_DS_LIMIT"]) == (0x1234, 0x12340,
                                                                                   0xFFFF)
    assert v["GUEST_CS_AR_BYTES"] == 0xF3 and v["GUEST_DS_AR_BYTES"] == 0xF3
    rig.resume_after(exit)
    exit = rig.enter()                                      # the saved state passes the checks
    assert exit.reason == 10 and rig.cpu.r[3] & 0xFFFF == 0x1234


@pytest.mark.parametrize("field,value,rule", [
    ("GUEST_CS_AR_BYTES", 0xFB, "CS: access rights of a virtual-8086 guest"),
    ("GUEST_SS_BASE", 0x1234, "SS: base of a virtual-8086 guest"),
    ("GUEST_DS_LIMIT", 0xFFFFF, "DS: limit of a virtual-8086 guest"),
])
def test_vmx_entry_checks_of_a_v86_guest(field, value, rule):
    rig = _v86_vmx_guest("cpuid")
    rig.vmcs[field] = value
    exit = rig.enter()
    assert exit.entry_failure and exit.detail.startswith(rule), exit.detail


def test_vmx_v86_guest_needs_cr0_pe_even_unrestricted():
    from vmx_rig import C
    rig = _v86_vmx_guest("cpuid")
    rig.controls(proc2=C.SEC_ENABLE_EPT | C.SEC_UNRESTRICTED_GUEST)
    rig.vmcs["EPT_POINTER"] = rig.ept()
    rig.vmcs["GUEST_CR0"] = 0x30                         # PE and PG clear: allowed unrestricted
    exit = rig.enter()
    assert exit.entry_failure and exit.detail.startswith("RFLAGS.VM set with CR0.PE clear")
