"""VM exits of the soft CPU, one test per exit reason or control, each
checking the SDM's numbers: basic exit reasons (appendix C), exit
qualifications (tables 27-3, 27-5), interruption information (24.9.2)."""
from __future__ import annotations

import pytest

from cpu_rig import CODE, IDT as IDT_BASE, KCODE, needs_as
from vmx_rig import C, IO_A, IO_B, MSR_BITMAP, VmxRig, asm

pytestmark = needs_as


def test_cpuid_exits_unconditionally_at_the_instruction():
    rig = VmxRig("mov eax, 1\ncpuid\nhlt")
    exit = rig.enter()
    assert exit.reason == 10 and exit.name == "CPUID"
    assert rig.vmcs["GUEST_RIP"] == CODE + 5 and exit.instruction_length == 2
    assert rig.vmcs["VM_EXIT_REASON"] == 10 and rig.vmcs["VM_EXIT_INSTRUCTION_LEN"] == 2
    assert rig.cpu.r[0] == 1                     # CPUID did not run: the monitor emulates it
    assert rig.cpu.eip == 0xDEAD0000 and rig.cpu.r[4] == 0x7000   # host state loaded


def test_hlt_exits_only_with_hlt_exiting():
    rig = VmxRig("nop\nhlt")
    rig.controls(proc=C.CPU_HLT_EXITING)
    exit = rig.enter()
    assert exit.reason == 12 and rig.vmcs["GUEST_RIP"] == CODE + 1
    rig = VmxRig("nop\nhlt")
    rig.controls(pin=C.PIN_EXTERNAL_INTERRUPT_EXITING, exit=C.EXIT_ACK_INTERRUPT_ON_EXIT)
    exit = rig.enter()
    # The guest halted; the host's timer took the CPU back: external interrupt, activity HLT.
    assert exit.reason == 1
    assert rig.vmcs["GUEST_ACTIVITY_STATE"] == C.HLT_STATE
    assert rig.vmcs["VM_EXIT_INTR_INFO"] == 0x800000EC


def test_pause_exits_only_with_pause_exiting():
    """SDM 25.1.3: PAUSE exiting makes every PAUSE (F3 90) exit, at the
    instruction (length 2); without it PAUSE is a NOP in the guest."""
    rig = VmxRig("nop\npause\nhlt")
    rig.controls(proc=C.CPU_PAUSE_EXITING | C.CPU_HLT_EXITING)
    exit = rig.enter()
    assert exit.reason == 40 and rig.vmcs["GUEST_RIP"] == CODE + 1
    assert rig.vmcs["VM_EXIT_INSTRUCTION_LEN"] == 2
    rig = VmxRig("nop\npause\nhlt")
    rig.controls(proc=C.CPU_HLT_EXITING)
    assert rig.enter().reason == 12 and rig.vmcs["GUEST_RIP"] == CODE + 3


# A spin loop hot enough to be compiled into a trace; its PAUSE runs once ECX is 100.
SPIN = """
    mov ecx, 3000
1:  dec ecx
    cmp ecx, 100
    jne 2f
    pause
2:  test ecx, ecx
    jnz 1b
    cpuid
"""


@pytest.mark.parametrize("pause_exiting", [False, True])
def test_pause_in_compiled_guest_code_follows_pause_exiting(pause_exiting):
    rig = VmxRig(SPIN)
    rig.controls(proc=C.CPU_PAUSE_EXITING if pause_exiting else 0)
    exit = rig.enter()
    if pause_exiting:
        assert exit.reason == 40 and rig.cpu.r[1] == 100
    else:
        assert exit.reason == 10 and rig.cpu.r[1] == 0          # CPUID: the loop ran out


@pytest.mark.parametrize("code,qual", [
    ("mov al, 5\nout 0x80, al", 0x80 << 16 | 0x40),                  # size 1, OUT, immediate
    ("mov dx, 0x3f8\nin eax, dx", 0x3F8 << 16 | 0x08 | 3),           # size 4, IN, DX
    ("mov dx, 0x61\nin ax, dx", 0x61 << 16 | 0x08 | 1),               # size 2
    ("mov dx, 0xe9\nmov esi, 0x5000\nmov ecx, 3\nrep outsb", 0xE9 << 16 | 0x30),   # string, REP
])
def test_io_exit_qualification(code, qual):
    rig = VmxRig(code)
    rig.controls(proc=C.CPU_UNCONDITIONAL_IO_EXITING)
    exit = rig.enter()
    assert exit.reason == 30 and exit.qualification == qual
    if "outsb" in code:
        assert rig.vmcs["GUEST_LINEAR_ADDRESS"] == 0x5000
        assert rig.vmcs["VMX_INSTRUCTION_INFO"] == 1 << 7 | 3 << 15     # 32-bit address, DS


def test_io_bitmaps_select_ports():
    rig = VmxRig("mov al, 1\nout 0x71, al\nout 0x70, al\nhlt")
    rig.write(IO_A, bytes(0x1000))
    rig.write(IO_B, bytes(0x1000))
    rig.write(IO_A + (0x70 >> 3), bytes([1 << (0x70 & 7)]))
    rig.vmcs["IO_BITMAP_A"], rig.vmcs["IO_BITMAP_B"] = IO_A, IO_B
    rig.controls(proc=C.CPU_USE_IO_BITMAPS | C.CPU_UNCONDITIONAL_IO_EXITING)
    exit = rig.enter()
    assert exit.reason == 30 and exit.qualification >> 16 == 0x70   # 0x71 ran without an exit
    # A word access that covers a bitmapped port exits too.
    rig = VmxRig("mov dx, 0x6f\nout dx, ax")
    rig.write(IO_A + (0x70 >> 3), bytes([1 << (0x70 & 7)]))
    rig.vmcs["IO_BITMAP_A"], rig.vmcs["IO_BITMAP_B"] = IO_A, IO_B
    rig.controls(proc=C.CPU_USE_IO_BITMAPS)
    assert rig.enter().reason == 30


def test_no_io_exiting_runs_the_port_access():
    rig = VmxRig("mov al, 1\nout 0x80, al\nmov eax, 1\ncpuid")
    assert rig.enter().reason == 10


def test_mov_to_cr0_exits_when_an_owned_bit_differs_from_its_shadow():
    rig = VmxRig("mov eax, cr0\nmov ebx, eax\nor eax, 8\nmov cr0, eax")
    rig.vmcs["CR0_GUEST_HOST_MASK"] = 0x28          # the monitor owns TS and NE
    rig.vmcs["CR0_READ_SHADOW"] = 0x00              # the guest believes NE=0, TS=0
    exit = rig.enter()
    assert exit.reason == 28
    assert exit.qualification == 0 | 0 << 4 | 0 << 8    # CR0, MOV to CR, EAX
    assert rig.cpu.r[3] == 0x80000011                   # MOV from CR0 read the shadow (NE=0)


def test_mov_to_cr0_without_exit_keeps_owned_bits():
    rig = VmxRig("mov eax, cr0\nand eax, 0xffffffdf\nmov cr0, eax\nmov ebx, cr0\ncpuid")
    rig.vmcs["CR0_GUEST_HOST_MASK"] = 0x20          # NE owned; shadow NE=0 matches the write
    exit = rig.enter()
    assert exit.reason == 10
    assert rig.vmcs["GUEST_CR0"] & 0x20               # NE stayed set in the real CR0
    assert rig.cpu.r[3] & 0x20 == 0                   # the guest still reads its shadow


def test_cr3_load_exiting_spares_cr3_target_values():
    from cpu_rig import PD
    rig = VmxRig(f"mov eax, {PD}\nmov cr3, eax\nmov ecx, 0x123000\nmov cr3, ecx")
    rig.controls(proc=C.CPU_CR3_LOAD_EXITING)
    rig.vmcs["CR3_TARGET_COUNT"], rig.vmcs["CR3_TARGET_VALUE0"] = 1, PD
    exit = rig.enter()
    assert exit.reason == 28 and exit.qualification == 3 | 0 << 4 | 1 << 8   # CR3, to, ECX


def test_cr3_store_exiting():
    rig = VmxRig("mov esi, cr3")
    rig.controls(proc=C.CPU_CR3_STORE_EXITING)
    exit = rig.enter()
    assert exit.reason == 28 and exit.qualification == 3 | 1 << 4 | 6 << 8   # CR3, from, ESI


def test_clts_and_lmsw_exits():
    rig = VmxRig("clts")
    rig.vmcs["CR0_GUEST_HOST_MASK"], rig.vmcs["CR0_READ_SHADOW"] = 8, 8
    exit = rig.enter()
    assert exit.reason == 28 and exit.qualification == 2 << 4
    rig = VmxRig("mov ax, 0x000b\nlmsw ax")
    rig.vmcs["CR0_GUEST_HOST_MASK"] = 8              # TS owned, shadow 0; LMSW sets TS
    exit = rig.enter()
    assert exit.reason == 28 and exit.qualification == 3 << 4 | 0x000B << 16


def test_mov_dr_exiting():
    rig = VmxRig("mov edx, dr7")
    rig.controls(proc=C.CPU_MOV_DR_EXITING)
    exit = rig.enter()
    assert exit.reason == 29 and exit.qualification == 7 | 1 << 4 | 2 << 8


def test_invlpg_exiting_reports_the_linear_address():
    rig = VmxRig("mov ebx, 0x1000\ninvlpg [ebx+0x234]")
    rig.controls(proc=C.CPU_INVLPG_EXITING)
    exit = rig.enter()
    assert exit.reason == 14 and exit.qualification == 0x1234


def test_rdmsr_wrmsr_exit_without_bitmaps_and_by_bitmap():
    rig = VmxRig("mov ecx, 0x174\nrdmsr")
    assert rig.enter().reason == 31
    rig = VmxRig("mov ecx, 0x174\nrdmsr\nwrmsr")
    rig.write(MSR_BITMAP, bytes(0x1000))
    rig.write(MSR_BITMAP + 2048 + (0x174 >> 3), bytes([1 << (0x174 & 7)]))   # write-low
    rig.vmcs["MSR_BITMAP"] = MSR_BITMAP
    rig.controls(proc=C.CPU_USE_MSR_BITMAPS)
    exit = rig.enter()
    assert exit.reason == 32 and rig.vmcs["GUEST_RIP"] == CODE + 7   # RDMSR ran, WRMSR exited


def test_vmcall_exits_and_is_ud_outside_vmx():
    rig = VmxRig("vmcall")
    exit = rig.enter()
    assert exit.reason == 18 and exit.instruction_length == 3
    from cpu_rig import Rig
    bare = Rig()
    bare.protected(asm("vmcall"))
    bare.intercept(6)
    assert bare.run().vector == 6


def test_rdtsc_exiting_and_tsc_offsetting():
    rig = VmxRig("rdtsc")
    rig.controls(proc=C.CPU_RDTSC_EXITING)
    assert rig.enter().reason == 16
    rig = VmxRig("rdtsc\ncpuid")
    rig.controls(proc=C.CPU_USE_TSC_OFFSETTING)
    rig.vmcs["TSC_OFFSET"] = 1 << 40
    before = rig.cpu.instructions
    rig.enter()
    tsc = rig.cpu.r[2] << 32 | rig.cpu.r[0]
    assert tsc == (1 << 40) + before and rig.cpu.tsc_offset == 0   # the offset left with the guest


def test_exception_bitmap_and_interruption_information():
    rig = VmxRig("ud2")
    rig.vmcs["EXCEPTION_BITMAP"] = 1 << 6
    exit = rig.enter()
    assert exit.reason == 0 and rig.vmcs["VM_EXIT_INTR_INFO"] == 0x80000306
    assert rig.vmcs["GUEST_RIP"] == CODE
    rig = VmxRig("mov ax, 0x1234\nmov ds, ax")       # #GP(0x1234) on a bad selector
    rig.vmcs["EXCEPTION_BITMAP"] = 1 << 13
    exit = rig.enter()
    assert rig.vmcs["VM_EXIT_INTR_INFO"] == 0x80000B0D and rig.vmcs["VM_EXIT_INTR_ERROR_CODE"] == 0x1234


def test_int3_is_a_software_exception_exiting_at_the_instruction():
    rig = VmxRig("nop\nint3")
    rig.vmcs["EXCEPTION_BITMAP"] = 1 << 3
    exit = rig.enter()
    assert rig.vmcs["VM_EXIT_INTR_INFO"] == 0x80000603 and exit.instruction_length == 1
    assert rig.vmcs["GUEST_RIP"] == CODE + 1


def test_page_fault_mask_and_match_and_cr2_untouched():
    code = "mov eax, [0x3ff000]"
    for mask, match, exits in ((0, 0, True), (1, 1, False), (1, 0, True)):
        rig = VmxRig(code)
        rig.set_pte(0x3FF000, 0)                     # not present: error code 0
        rig.vmcs["EXCEPTION_BITMAP"] = 1 << 14
        rig.vmcs["PAGE_FAULT_ERROR_CODE_MASK"], rig.vmcs["PAGE_FAULT_ERROR_CODE_MATCH"] = mask, match
        rig.set_idt(14, CODE + 0x100)
        rig.write(CODE + 0x100, asm("cpuid"))
        exit = rig.enter()
        if exits:
            assert exit.reason == 0 and exit.qualification == 0x3FF000
            assert rig.vmcs["VM_EXIT_INTR_INFO"] == 0x80000B0E
            assert rig.cpu.cr2 == 0                 # SDM 27.1: CR2 not written on a #PF exit
        else:
            assert exit.reason == 10 and rig.vmcs["GUEST_RIP"] == CODE + 0x100
            assert rig.vmcs["VM_EXIT_INTR_INFO"] == 0 and rig.cpu.cr2 == 0x3FF000   # the guest's #PF


def test_triple_fault_exits():
    rig = VmxRig("ud2")
    rig.vmcs["GUEST_IDTR_LIMIT"] = 0
    assert rig.enter().reason == 2


def test_interrupt_window_opens_after_the_sti_shadow():
    rig = VmxRig("nop\nsti\nnop\nnop\nhlt")
    rig.controls(proc=C.CPU_INTERRUPT_WINDOW_EXITING)
    exit = rig.enter()
    assert exit.reason == 7
    assert rig.vmcs["GUEST_RIP"] == CODE + 3          # after STI and the instruction it shields


class _Pic:
    def __init__(self, vector):
        self.vector, self.acked = vector, 0

    def pending(self):
        return self.acked == 0

    def acknowledge(self):
        self.acked += 1
        return self.vector


def test_external_interrupt_exit_acknowledges_the_controller():
    rig = VmxRig("nop\nnop\nhlt", eflags=0x202)
    pic = rig.cpu.interrupts = _Pic(0x31)
    rig.controls(pin=C.PIN_EXTERNAL_INTERRUPT_EXITING, exit=C.EXIT_ACK_INTERRUPT_ON_EXIT)
    exit = rig.enter()
    assert exit.reason == 1 and rig.vmcs["VM_EXIT_INTR_INFO"] == 0x80000031 and pic.acked == 1
    assert rig.cpu.interrupts is pic                 # the pin is the host's again


def test_event_injection_delivers_through_the_guest_idt():
    rig = VmxRig("hlt")
    rig.set_idt(0x30, CODE + 0x100)
    rig.write(CODE + 0x100, asm("cpuid", org=CODE + 0x100))
    rig.vmcs["VM_ENTRY_INTR_INFO_FIELD"] = C.intr_info(0x30, C.TYPE_EXTERNAL)
    rig.vmcs["GUEST_RFLAGS"] = 0x202
    exit = rig.enter()
    assert exit.reason == 10 and rig.vmcs["GUEST_RIP"] == CODE + 0x100
    assert rig.vmcs["VM_ENTRY_INTR_INFO_FIELD"] & C.INTR_VALID == 0     # cleared by the exit
    esp = rig.vmcs["GUEST_RSP"]
    assert rig.mem.read_u32(esp) == CODE and rig.mem.read_u32(esp + 4) == KCODE


def test_injected_exception_pushes_its_error_code():
    rig = VmxRig("hlt")
    rig.set_idt(13, CODE + 0x100)
    rig.write(CODE + 0x100, asm("cpuid", org=CODE + 0x100))
    rig.vmcs["VM_ENTRY_INTR_INFO_FIELD"] = C.intr_info(13, C.TYPE_HW_EXCEPTION, True)
    rig.vmcs["VM_ENTRY_EXCEPTION_ERROR_CODE"] = 0x58
    rig.enter()
    assert rig.mem.read_u32(rig.vmcs["GUEST_RSP"]) == 0x58


def test_task_switch_exits_with_selector_and_source():
    rig = VmxRig("jmp 0x28:0")
    exit = rig.enter()
    assert exit.reason == 9 and exit.qualification == 0x28 | 2 << 30


def test_preemption_timer_bounds_the_run():
    rig = VmxRig("1: inc eax\njmp 1b")
    rig.controls(pin=C.PIN_PREEMPTION_TIMER, exit=C.EXIT_SAVE_PREEMPTION_TIMER)
    rig.vmcs["VMX_PREEMPTION_TIMER_VALUE"] = 1000
    exit = rig.enter()
    assert exit.reason == 52 and rig.vmcs["VMX_PREEMPTION_TIMER_VALUE"] == 0
    assert 499 <= rig.cpu.r[0] <= 501


def test_resume_continues_after_an_emulated_instruction():
    rig = VmxRig("cpuid\nmov ebx, 7\ncpuid")
    exit = rig.enter()
    rig.resume_after(exit)
    exit = rig.enter()
    assert exit.reason == 10 and rig.cpu.r[3] == 7 and rig.vmcs["GUEST_RIP"] == CODE + 7


def test_code_without_exits_runs_compiled_in_non_root_operation():
    rig = VmxRig("mov ecx, 2000\n1: add eax, ecx\nloop 1b\ncpuid")
    rig.enter()
    assert rig.cpu.blocks.compiled >= 1 and rig.cpu.r[0] == sum(range(1, 2001))



def test_fault_while_delivering_an_event_reports_idt_vectoring_information():
    rig = VmxRig("hlt")
    rig.vmcs["GUEST_RSP"] = 0x3FF800
    rig.set_pte(0x3FF000, 0)                         # the guest's stack page is not present
    rig.set_idt(0x30, CODE + 0x100)
    rig.vmcs["EXCEPTION_BITMAP"] = 1 << 14
    rig.vmcs["VM_ENTRY_INTR_INFO_FIELD"] = C.intr_info(0x30, C.TYPE_EXTERNAL)
    rig.vmcs["GUEST_RFLAGS"] = 0x202
    exit = rig.enter()
    assert exit.reason == 0 and rig.vmcs["VM_EXIT_INTR_INFO"] == 0x80000B0E
    assert rig.vmcs["IDT_VECTORING_INFO_FIELD"] == 0x80000030      # the interrupt, to re-inject
    assert rig.vmcs["GUEST_RIP"] == CODE and rig.vmcs["GUEST_RSP"] == 0x3FF800


def test_monitor_trap_flag_exits_after_one_instruction():
    rig = VmxRig("inc eax\ninc eax\ninc eax")
    rig.controls(proc=C.CPU_MONITOR_TRAP_FLAG)
    exit = rig.enter()
    assert exit.reason == 37 and rig.cpu.r[0] == 1 and rig.vmcs["GUEST_RIP"] == CODE + 1


def test_nmi_window_opens_unless_virtual_nmis_are_blocked():
    rig = VmxRig("nop")
    rig.controls(pin=C.PIN_NMI_EXITING | C.PIN_VIRTUAL_NMIS, proc=C.CPU_NMI_WINDOW_EXITING)
    exit = rig.enter()
    assert exit.reason == 8 and rig.vmcs["GUEST_RIP"] == CODE
    # An injected NMI blocks further ones until its handler's IRET: the
    # window opens when the handler returns, at the interrupted instruction.
    rig = VmxRig("nop\nnop\ncpuid")
    rig.set_idt(2, CODE + 0x100)
    rig.write(CODE + 0x100, asm("inc ebx\niretd", org=CODE + 0x100))
    rig.controls(pin=C.PIN_NMI_EXITING | C.PIN_VIRTUAL_NMIS, proc=C.CPU_NMI_WINDOW_EXITING)
    rig.vmcs["VM_ENTRY_INTR_INFO_FIELD"] = C.intr_info(2, C.TYPE_NMI)
    exit = rig.enter()
    assert exit.reason == 8 and rig.cpu.r[3] == 1 and rig.vmcs["GUEST_RIP"] == CODE
    assert rig.vmcs["GUEST_INTERRUPTIBILITY_INFO"] & C.BLOCKING_BY_NMI == 0


def test_external_interrupt_exiting_does_not_wait_for_if():
    rig = VmxRig("nop\nnop\nhlt")                   # IF=0
    pic = rig.cpu.interrupts = _Pic(0x31)
    rig.controls(pin=C.PIN_EXTERNAL_INTERRUPT_EXITING, exit=C.EXIT_ACK_INTERRUPT_ON_EXIT)
    exit = rig.enter()
    assert exit.reason == 1 and pic.acked == 1 and rig.vmcs["GUEST_RIP"] == CODE


@pytest.mark.parametrize("code,reason", [
    ("vmlaunch", 20), ("vmresume", 24), ("vmxoff", 26), ("vmptrld [0x1000]", 21),
    ("vmclear [0x1000]", 19), ("vmxon [0x1000]", 27), ("vmptrst [0x1000]", 22),
    ("vmread eax, ebx", 23), ("vmwrite ebx, eax", 25),
])
def test_vmx_instructions_exit_unconditionally(code, reason):
    rig = VmxRig(code, cpl=3)                         # whatever the CPL
    exit = rig.enter()
    assert exit.reason == reason
    if "[0x1000]" in code:
        assert exit.qualification == 0x1000
    from cpu_rig import Rig
    bare = Rig()
    bare.protected(asm(code))
    bare.intercept(6)
    assert bare.run().vector == 6                     # outside VMX operation: #UD


def test_a_halt_nothing_can_end_is_reported_not_hung():
    from ringvisor.errors import GuestCrashed
    rig = VmxRig("hlt")                              # no HLT exiting, no timer, no interrupts
    with pytest.raises(GuestCrashed) as e:
        rig.enter()
    assert "nothing to wake it" in str(e.value) and rig.cpu.vmx is None


def test_a_double_fault_exits_by_the_exception_bitmap_with_the_first_event():
    rig = VmxRig("mov ax, 0x1230\nmov ds, ax")       # #GP(0x1230): outside the GDT
    rig.write(IDT_BASE + 8 * 13, bytes(8))            # #GP's gate not present: #NP, so #DF
    rig.vmcs["EXCEPTION_BITMAP"] = 1 << 8
    exit = rig.enter()
    assert exit.reason == 0 and rig.vmcs["VM_EXIT_INTR_INFO"] == 0x80000B08
    assert rig.vmcs["VM_EXIT_INTR_ERROR_CODE"] == 0
    assert rig.vmcs["IDT_VECTORING_INFO_FIELD"] == 0x80000B0D
    assert rig.vmcs["IDT_VECTORING_ERROR_CODE"] == 0x1230
    assert rig.vmcs["GUEST_RIP"] == CODE + 4


def test_double_fault_through_a_task_gate_reports_the_df_as_idt_vectoring():
    # A #GP whose delivery meets a not-present gate (#NP) is a double fault;
    # its task gate exits (task switch, source 3), and the event being
    # delivered is the #DF with error code 0, not the #GP that started it
    # (SDM 27.2.4). Regression: the exit used to report the #GP.
    from cpu_rig import gate
    rig = VmxRig("mov ax, 0x1234\nmov ds, ax")
    rig.set_idt(8, 0, type_=0x5, sel=0x28)          # task gate to the rig's TSS descriptor
    rig.write(0x2000 + 8 * 13, gate(0x08, CODE, 0xE, p=False))
    exit = rig.enter()
    assert exit.reason == 9 and exit.qualification == 0x28 | 3 << 30
    assert rig.vmcs["IDT_VECTORING_INFO_FIELD"] == 0x80000B08
    assert rig.vmcs["IDT_VECTORING_ERROR_CODE"] == 0


def test_nothing_to_poll_in_non_root_operation_without_windows_or_an_interrupt_source():
    # The engine polls cpu.interrupts between compiled traces; with no window
    # exiting and no source on the CPU's pin (the hw monitor's case) there is
    # nothing to poll (it cost a quarter of a compute run's time), and an
    # interrupt window brings the poll back.
    from ringvisor.cpu.vmx.nonroot import NonRoot, WindowPin, window_pin
    rig = VmxRig("nop")
    nr = NonRoot(rig.vmcs)
    nr.host_pin = None
    assert window_pin(nr, rig.cpu) is None
    rig.controls(proc=C.CPU_INTERRUPT_WINDOW_EXITING)
    nr = NonRoot(rig.vmcs)
    nr.host_pin = None
    assert isinstance(window_pin(nr, rig.cpu), WindowPin)
