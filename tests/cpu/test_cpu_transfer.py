"""Far transfers across privilege levels, interrupts through the IDT,
IRET, double and triple faults, the interrupt shadow, mode switches."""
import struct

from ringvisor.exits import Fault, Halt, Shutdown
from cpu_rig import (CODE, KCODE, KDATA, STACK0, STACK3, TSS, UCODE, UDATA, Pic, Rig, asm, desc,
                     needs_as)

pytestmark = needs_as

USER = """
    push 0x11111111
    push 0x22222222
    call 0x33:0             # call gate (selector 0x30, RPL 3) to ring 0, 2 params
    mov esi, ds
    int3
"""
KERNEL = """
    mov ebx, cs
    mov ecx, ss
    mov edx, [esp+8]        # first copied parameter (pushed last)
    mov edi, [esp+12]
    mov ax, 0x10
    mov ds, ax              # ring-0 data in DS: must be nulled on return to ring 3
    retf 8
"""


def test_call_gate_stack_switch_and_return():
    rig = Rig()
    user = asm(USER)
    kernel_at = CODE + 0x100
    rig.standard_gdt(gate_target=kernel_at, gate_params=2)
    rig.protected(user, cpl=3)
    rig.write(kernel_at, asm(KERNEL, org=kernel_at))
    rig.intercept(3, 13)
    e = rig.run()
    assert isinstance(e, Fault) and e.vector == 3, e
    c = rig.cpu
    assert c.r[3] == KCODE and c.r[1] == KDATA            # ran in ring 0 on the TSS stack
    assert c.r[2] == 0x22222222 and c.r[7] == 0x11111111   # parameters copied
    assert c.cpl == 3 and c.segs[1].selector == UCODE and c.r[4] == STACK3
    assert c.r[6] == 0                                      # DS nulled (DPL 0 < CPL 3)
    # The ring-0 stack frame: params, old CS:EIP... and old SS:ESP at the top.
    frame = [rig.u32(STACK0 - 4 * i) for i in range(1, 7)]
    assert frame[0] == UDATA and frame[1] == STACK3 - 8


def test_call_gate_dpl_check():
    rig = Rig()
    rig.standard_gdt(gate_target=CODE)
    rig.gdt[6] = rig.gdt[6][:5] + bytes([0x8C]) + rig.gdt[6][6:]   # gate DPL 0
    rig.flush_gdt()
    rig.protected("call 0x33:0", cpl=3)
    rig.intercept(13)
    e = rig.run()
    assert e.vector == 13 and e.error_code == 0x30


def test_int_from_ring3_and_iret():
    rig = Rig()
    rig.protected("mov eax, 5\nint 0x80\nmov ebx, eax\nint3", cpl=3, eflags=0x202)
    handler = CODE + 0x200
    rig.write(handler, asm("mov edx, esp\nmov ecx, cs\nadd eax, 1\niretd", org=handler))
    rig.set_idt(0x80, handler, dpl=3)
    rig.intercept(3)
    e = rig.run()
    c = rig.cpu
    assert e.vector == 3 and c.r[3] == 6 and c.r[1] == KCODE
    assert c.r[2] == STACK0 - 20                            # SS, ESP, EFLAGS, CS, EIP
    assert c.cpl == 3 and c.flags & 0x200 and c.r[4] == STACK3


def test_int_gate_dpl_blocks_user():
    rig = Rig()
    rig.protected("int 0x80", cpl=3)
    rig.set_idt(0x80, CODE, dpl=0)
    rig.intercept(13)
    e = rig.run()
    assert e.vector == 13 and e.error_code == 0x80 * 8 + 2


def test_exception_error_code_and_double_fault():
    rig = Rig()
    # #GP (bad selector) with the #GP gate not present -> #NP -> double fault.
    rig.protected("mov ax, 0x1234\nmov ds, ax\nhlt")
    df = CODE + 0x300
    rig.write(df, asm("pop eax\nhlt", org=df))
    rig.set_idt(8, df)
    e = rig.run()
    assert isinstance(e, Halt) and rig.cpu.r[0] == 0


def test_triple_fault_is_shutdown():
    rig = Rig()
    rig.protected("mov eax, [0xFFFFFFF0]\nint 3")
    rig.cpu.idtr.limit = 0
    rig.cpu.cr0 |= 0
    rig.write(CODE, b"\x0f\x0b")                          # UD2, with no usable IDT
    assert isinstance(rig.run(), Shutdown)


def test_interrupt_shadow_after_sti():
    pic = Pic()
    rig = Rig(interrupts=pic)
    rig.protected("sti\ninc eax\ninc eax\nhlt")
    handler = CODE + 0x200
    rig.write(handler, asm("mov ebx, eax\niretd", org=handler))
    rig.set_idt(0x20, handler)
    rig.cpu.use_blocks = False
    from ringvisor.exits import Interrupted
    assert isinstance(rig.run(1), Interrupted)             # STI only
    pic.vector = 0x20
    rig.run(1)                                             # the shadowed instruction
    assert rig.cpu.r[0] == 1 and rig.cpu.eip != handler
    rig.run()
    assert rig.cpu.r[3] == 1                               # taken after exactly one instruction


def test_hlt_wakes_on_interrupt():
    pic = Pic()
    rig = Rig(interrupts=pic)
    rig.protected("sti\nhlt\nmov ecx, 7\nhlt", eflags=0)
    handler = CODE + 0x200
    rig.write(handler, asm("mov ebx, 9\niretd", org=handler))
    rig.set_idt(0x21, handler)
    assert isinstance(rig.run(), Halt)
    assert isinstance(rig.run(), Halt)                     # still nothing pending
    pic.vector = 0x21
    assert isinstance(rig.run(), Halt)
    assert rig.cpu.r[3] == 9 and rig.cpu.r[1] == 7


def test_real_to_protected_and_back():
    rig = Rig()
    rig.standard_gdt()
    code16 = f"""
        lgdt [gdtr]
        mov eax, cr0
        or eax, 1
        mov cr0, eax
        ljmp 0x08, offset pm
    gdtr: .word 16*8-1
          .long 0x1000
    .code32
    pm: mov ax, 0x10
        mov ds, ax
        mov ss, ax
        mov esp, 0x8000
        mov dword ptr [0x7000], 0xdeadbeef
        ljmp 0x38, offset back16
    .code16
    back16:
        mov eax, cr0
        and eax, 0xfffffffe
        mov cr0, eax
        ljmp 0, offset real
    real:
        xor ax, ax
        mov ds, ax
        mov ebx, [0x7000]
        hlt
    """
    code = asm(code16, org=0x7C00, bits=16)
    from ringvisor.cpu_state import CpuState
    rig.write(0x7C00, code)
    rig.cpu.set_state(CpuState.real_mode(0, 0x7C00, 0x7000))
    e = rig.run()
    assert isinstance(e, Halt), (e, hex(rig.cpu.eip))
    assert rig.cpu.r[3] == 0xDEADBEEF and not rig.cpu.pe and rig.cpu.segs[1].selector == 0


def test_sysenter_sysexit():
    rig = Rig()
    rig.protected("mov ecx, 0x174\nxor edx, edx\nmov eax, 0x08\nwrmsr\n"
                  "mov ecx, 0x175\nmov eax, 0x70000\nwrmsr\n"
                  "mov ecx, 0x176\nmov eax, 0x10300\nwrmsr\n"
                  "mov ecx, 0x90000\nmov edx, 0x10400\nsysexit")
    rig.write(0x10400, asm("mov esi, cs\nsysenter", org=0x10400))
    rig.write(0x10300, asm("mov edi, cs\nhlt", org=0x10300))
    assert isinstance(rig.run(), Halt)
    assert rig.cpu.r[6] == 0x1B and rig.cpu.r[7] == 0x08 and rig.cpu.r[4] == 0x70000


def test_self_modifying_code():
    for blocks in (False, True):
        rig = Rig()
        rig.protected("""
            mov ecx, 3
        again:
            mov eax, 1
            mov byte ptr [again+1], 2     # patch the immediate of the next pass
            dec ecx
            jnz again
            hlt
        """)
        rig.cpu.use_blocks = blocks
        assert isinstance(rig.run(), Halt)
        assert rig.cpu.r[0] == 2, blocks


def test_get_set_state_roundtrip():
    rig = Rig()
    st = rig.protected("hlt", cpl=3, eax=1, ebx=2)
    got = rig.cpu.get_state()
    assert got == st
    _ = (struct, TSS, desc, UDATA)


def test_single_step_trap():
    rig = Rig()
    rig.protected("inc eax\ninc eax\nhlt", eflags=0x102)
    rig.intercept(1)
    e = rig.run()
    assert isinstance(e, Fault) and e.vector == 1
    assert rig.cpu.r[0] == 1 and rig.cpu.eip == CODE + 1 and rig.cpu.dr[6] & 0x4000
