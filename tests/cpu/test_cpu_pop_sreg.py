"""POP SS / POP Sreg move the stack pointer with the width of the stack they
popped from (SDM vol. 2, POP: "the stack-address size ... of the current
stack"), not with the B bit of the segment just loaded. Found by running
standard x86 test kernels: SS was loaded first and ESP then moved by the new
segment's width."""
import struct

from cpu_rig import KDATA, Rig, desc, needs_as

DATA16 = 0x50                          # GDT[10]: a 16-bit (B=0) ring-0 data segment


def run(code: str, stack_word_at: int, selector: int) -> Rig:
    rig = Rig()
    rig.standard_gdt()
    rig.gdt[10] = desc(0, 0xFFFF, 0x3, db=False, g=False)
    rig.flush_gdt()
    rig.write(stack_word_at, struct.pack("<I", selector))
    rig.protected(code + "\nint3")
    rig.intercept(3)
    rig.run()
    return rig


@needs_as
def test_pop_ss_from_a_32_bit_stack_to_a_16_bit_segment_moves_esp_by_32_bits():
    rig = run("mov esp, 0x1fffc\npop ss", 0x1FFFC, DATA16)
    assert rig.cpu.r[4] == 0x20000                 # 16-bit arithmetic would give 0x10000
    assert rig.cpu.segs[2].selector == DATA16


@needs_as
def test_pop_ss_from_a_16_bit_stack_to_a_32_bit_segment_wraps_sp_at_16_bits():
    rig = run(f"mov ax, {DATA16}\nmov ss, ax\nmov esp, 0x1fffc\npop ss", 0xFFFC, KDATA)
    assert rig.cpu.r[4] == 0x10000                 # 32-bit arithmetic would give 0x20000
    assert rig.cpu.segs[2].selector == KDATA


@needs_as
def test_pop_ds_is_unchanged_by_the_fix():
    rig = run("mov esp, 0x1fffc\npop ds", 0x1FFFC, DATA16)
    assert rig.cpu.r[4] == 0x20000 and rig.cpu.segs[3].selector == DATA16
