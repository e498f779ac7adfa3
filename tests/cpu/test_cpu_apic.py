"""The soft CPU with its local APIC attached (the pc machine): the APIC's
MSRs through RDMSR/WRMSR, CPUID.1 reporting it, and interrupts accepted
from it: fixed vectors by priority with EOI, ExtINT from the 8259 pair
through LINT0 (virtual wire), NMI regardless of IF and blocked until IRET."""
import pytest

from ringvisor.devices.apic_bus import ApicBus
from ringvisor.devices.apic_defs import Delivery, Reg
from ringvisor.devices.lapic import LocalApic
from ringvisor.devices.pic8259 import PicPair
from ringvisor.exits import Fault, Halt
from cpu_rig import CODE, Rig, needs_as

pytestmark = needs_as

HANDLER = 0x20000          # 0x20000 + 0x100*k: handler k, records its vector
LOG = 0x30000              # the handlers append their vectors here (count at LOG)


def apic_rig(*, bsp=True, x2apic=False, pic=None, apic_id=0):
    rig = Rig()
    apic = LocalApic(apic_id, bsp=bsp, x2apic=x2apic, extint=pic,
                     clock=lambda: rig.cpu.instructions * 10, tsc=rig.cpu.tsc)
    ApicBus().attach(apic)
    rig.cpu.attach_apic(apic)
    return rig, apic


def rdmsr(rig, index):
    rig.protected("rdmsr\nhlt", ecx=index)
    rig.intercept(13)
    e = rig.run()
    return e, rig.cpu.r[2] << 32 | rig.cpu.r[0]


def test_rdmsr_apic_base_reads_enable_bsp_and_the_default_address():
    rig, apic = apic_rig()
    e, value = rdmsr(rig, 0x1B)
    assert isinstance(e, Halt)
    assert value == 0xFEE00000 | 1 << 11 | 1 << 8


def test_an_application_processor_has_no_bsp_flag():
    rig, apic = apic_rig(bsp=False, apic_id=1)
    assert rdmsr(rig, 0x1B)[1] == 0xFEE00000 | 1 << 11


def test_wrmsr_relocates_and_disables_and_reserved_bits_are_gp():
    rig, apic = apic_rig()
    rig.protected("wrmsr\nhlt", ecx=0x1B, eax=0xFED00000 | 1 << 11 | 1 << 8, edx=0)
    assert isinstance(rig.run(), Halt)
    assert apic.base_address == 0xFED00000 and apic.hw_enabled
    rig.protected("wrmsr\nhlt", ecx=0x1B, eax=0xFEE00000, edx=0)      # EN clear: disabled
    assert isinstance(rig.run(), Halt) and not apic.hw_enabled
    rig.protected("wrmsr\nhlt", ecx=0x1B, eax=0xFEE00000 | 1 << 11 | 1, edx=0)   # bit 0 reserved
    rig.intercept(13)
    e = rig.run()
    assert isinstance(e, Fault) and e.vector == 13 and e.error_code == 0 and rig.cpu.eip == CODE


def test_x2apic_msrs_are_gp_in_xapic_mode_and_read_in_x2apic_mode():
    rig, apic = apic_rig(x2apic=True, apic_id=3)
    e, _ = rdmsr(rig, 0x802)                                          # x2APIC ID register
    assert isinstance(e, Fault) and e.vector == 13
    rig.protected("wrmsr\nrdmsr\nhlt", ecx=0x1B, eax=0xFEE00000 | 3 << 10, edx=0)
    # WRMSR enters x2APIC mode; RDMSR then reads IA32_APIC_BASE back (ECX unchanged).
    assert isinstance(rig.run(), Halt) and apic.x2apic
    e, value = rdmsr(rig, 0x802)
    assert isinstance(e, Halt) and value == 3


def test_tsc_deadline_msr_arms_the_timer_and_reads_back():
    rig, apic = apic_rig()
    apic.write_register(Reg.LVT_TIMER, 2 << 17 | 0x40)                # TSC-deadline mode
    rig.protected("wrmsr\nrdmsr\nhlt", ecx=0x6E0, eax=1_000_000, edx=0)
    assert isinstance(rig.run(), Halt)
    assert rig.cpu.r[0] == 1_000_000 and apic.timer.next_due_ns is not None


def test_unknown_msr_is_still_gp():
    rig, apic = apic_rig()
    e, _ = rdmsr(rig, 0x12345)
    assert isinstance(e, Fault) and e.vector == 13


def cpuid1(rig):
    rig.protected("cpuid\nhlt", eax=1)
    rig.run()
    return rig.cpu.r[3], rig.cpu.r[1], rig.cpu.r[2]                    # EBX, ECX, EDX


def test_cpuid_reports_the_apic_its_id_and_follows_apic_base_en():
    rig, apic = apic_rig(bsp=False, apic_id=5, x2apic=True)
    ebx, ecx, edx = cpuid1(rig)
    assert ebx >> 24 == 5 and edx >> 9 & 1 and ecx >> 24 & 1 and ecx >> 21 & 1
    apic.write_msr(0x1B, 0xFEE00000)                                  # software clears EN
    assert not cpuid1(rig)[2] >> 9 & 1


def test_cpuid_without_an_apic_reports_none():
    rig = Rig()
    ebx, ecx, edx = cpuid1(rig)
    assert not edx >> 9 & 1 and ebx >> 24 == 0


# -- interrupt acceptance --------------------------------------------------------------
def handlers(rig, vectors):
    """IDT entries for `vectors`: each handler logs its vector, sends EOI
    (if `eoi`), and IRETs."""
    rig.standard_gdt()
    for k, v in enumerate(vectors):
        at = HANDLER + 0x100 * k
        from cpu_rig import asm
        rig.write(at, asm(f"""
            push eax
            push ebx
            mov eax, [{LOG:#x}]
            mov dword ptr [{LOG + 4:#x} + eax*4], {v}
            inc dword ptr [{LOG:#x}]
            pop ebx
            pop eax
            iretd""", org=at))
        rig.set_idt(v, at)


def logged(rig):
    n = rig.u32(LOG)
    return [rig.u32(LOG + 4 + 4 * i) for i in range(n)]


def test_fixed_interrupts_arrive_by_priority_and_wait_for_eoi():
    rig, apic = apic_rig()
    apic.write_register(Reg.SVR, 0x1FF)
    handlers(rig, [0x31, 0x52, 0x61])
    for v in (0x31, 0x61, 0x52):
        apic.accept(Delivery.FIXED, v)
    rig.protected("sti\nnop\nnop\ncli\nhlt", eflags=2)
    rig.run()
    # The highest first; each handler returns without EOI, so a lower
    # vector (in a class not above the one in service) waits.
    assert logged(rig) == [0x61]
    assert apic.isr >> 0x61 & 1 and apic.ppr() == 0x60
    apic.write_register(Reg.EOI, 0)
    rig.protected("sti\nnop\ncli\nhlt")
    rig.run()
    assert logged(rig) == [0x61, 0x52]


def test_tpr_holds_back_lower_classes():
    rig, apic = apic_rig()
    apic.write_register(Reg.SVR, 0x1FF)
    handlers(rig, [0x41])
    apic.write_register(Reg.TPR, 0x50)
    apic.accept(Delivery.FIXED, 0x41)
    rig.protected("sti\nnop\nnop\ncli\nhlt")
    rig.run()
    assert logged(rig) == []
    apic.write_register(Reg.TPR, 0x30)
    rig.protected("sti\nnop\ncli\nhlt")
    rig.run()
    assert logged(rig) == [0x41]


def test_a_halted_cpu_wakes_for_an_apic_timer_interrupt():
    rig, apic = apic_rig()
    apic.write_register(Reg.SVR, 0x1FF)
    handlers(rig, [0x40])
    apic.write_register(Reg.TIMER_DIVIDE, 0xB)                        # divide by 1
    apic.write_register(Reg.LVT_TIMER, 0x40)                          # one-shot, vector 0x40
    rig.protected("sti\nhlt\ncli\nhlt")
    apic.write_register(Reg.TIMER_INITIAL, 5)
    assert isinstance(rig.run(), Halt) and logged(rig) == []          # halted before it expires
    apic.advance_to(10 * 10)                                           # 5 bus clocks later
    rig.run()
    assert logged(rig) == [0x40]


def test_extint_through_lint0_delivers_the_8259s_vector():
    pic = PicPair()
    from ringvisor.machine.bus import PortBus
    ports = PortBus()
    pic.register(ports)
    for port, value in ((0x20, 0x11), (0x21, 0x20), (0x21, 4), (0x21, 1),
                        (0xA0, 0x11), (0xA1, 0x28), (0xA1, 2), (0xA1, 1), (0x21, 0)):
        ports.write(port, 1, value)
    rig, apic = apic_rig(pic=pic)
    apic.write_register(Reg.SVR, 0x1FF)
    apic.write_register(0x350, 0x700)                         # ExtINT: virtual wire
    handlers(rig, [0x21])
    pic.irq_line(1)(1)
    rig.protected("sti\nnop\ncli\nhlt")
    rig.run()
    assert logged(rig) == [0x21]


def test_nmi_ignores_if_and_is_blocked_until_iret():
    rig, apic = apic_rig()
    handlers(rig, [2])
    # The NMI handler is entered with IF=0 (an interrupt gate): a second NMI
    # accepted while it runs waits for its IRET.
    apic.accept(Delivery.NMI, 0)
    rig.protected("nop\nnop\nhlt")                                    # IF=0 throughout
    rig.run()
    assert logged(rig) == [2] and not rig.cpu.nmi_blocked
    rig.cpu.nmi_blocked = True                                         # as if inside the handler
    apic.accept(Delivery.NMI, 0)
    rig.protected("nop\nhlt")
    rig.cpu.nmi_blocked = True
    assert isinstance(rig.run(), Halt) and logged(rig) == [2]          # held back
    rig.protected(f"push 0x2\npush 0x08\npush {CODE + 0x20:#x}\niretd")
    rig.write(CODE + 0x20, bytes.fromhex("90f4ebfd"))                   # nop; 1: hlt; jmp 1b
    rig.cpu.nmi_blocked = True
    rig.run()
    assert logged(rig) == [2, 2]                                       # the IRET let it in


@pytest.mark.parametrize("use_blocks", [True, False])
def test_interrupts_between_compiled_blocks_too(use_blocks):
    rig, apic = apic_rig()
    rig.cpu.use_blocks = use_blocks
    apic.write_register(Reg.SVR, 0x1FF)
    handlers(rig, [0x80])
    rig.protected("sti\nmov ecx, 200\n1: loop 1b\ncli\nhlt")
    apic.accept(Delivery.FIXED, 0x80)
    rig.run()
    assert logged(rig) == [0x80]
