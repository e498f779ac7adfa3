"""Task switches through a TSS descriptor and a task gate, and IRET back (NT)."""
import struct

from ringvisor.exits import Halt
from cpu_rig import CODE, GDT, KCODE, KDATA, TSS, TSSSEL, Rig, asm, desc, gate, needs_as

pytestmark = needs_as

TSS_B, TSSB_SEL, TGATE_SEL = 0x3800, 0x50, 0x58
B_CODE = CODE + 0x400


def setup(rig, a_code):
    rig.protected(a_code)
    rig.gdt[10] = desc(TSS_B, 0x67, 0x9, s=False, g=False, db=False)
    rig.gdt[11] = gate(TSSB_SEL, 0, 0x5)
    rig.flush_gdt()
    # mark the current TSS busy as LTR would
    hi = rig.u32(GDT + 0x28 + 4)
    rig.mem.write_u32(GDT + 0x28 + 4, hi | 0x200)
    tss = bytearray(0x68)
    struct.pack_into("<II", tss, 0x20, B_CODE, 2)                 # EIP, EFLAGS
    struct.pack_into("<I", tss, 0x28 + 16, 0x70000)               # ESP
    for i, sel in enumerate((KDATA, KCODE, KDATA, KDATA, KDATA, KDATA)):
        struct.pack_into("<I", tss, 0x48 + 4 * i, sel)
    rig.write(TSS_B, bytes(tss))
    rig.write(B_CODE, asm("mov dword ptr [0x7000], 0x42\nmov eax, [0x3800]\nmov [0x7004], eax\n"
                          "iretd\njmp .", org=B_CODE))


def test_call_to_tss_and_iret_back():
    rig = Rig()
    setup(rig, "mov ebx, 7\ncall 0x50:0\nmov ecx, 9\nhlt")
    e = rig.run()
    assert isinstance(e, Halt), (e, hex(rig.cpu.eip))
    c = rig.cpu
    assert rig.u32(0x7000) == 0x42 and rig.u32(0x7004) & 0xFFFF == TSSSEL   # back link
    assert c.r[3] == 7 and c.r[1] == 9 and c.tr.selector == TSSSEL
    assert not c.flags & 0x4000 and c.cr0 & 8                               # NT clear, TS set
    assert rig.u32(GDT + TSSB_SEL + 4) & 0x200 == 0                          # B no longer busy


def test_int_through_task_gate():
    rig = Rig()
    setup(rig, "int 0x40\nmov ecx, 9\nhlt")
    rig.write(0x2000 + 8 * 0x40, gate(TSSB_SEL, 0, 0x5))
    assert isinstance(rig.run(), Halt)
    assert rig.u32(0x7000) == 0x42 and rig.cpu.r[1] == 9
    _ = TSS
