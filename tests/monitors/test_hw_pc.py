"""The hw monitor on the pc machine, one vCPU (monitors/hw/vapic.py): the
guest's xAPIC and I/O APIC accesses reach the machine's devices (EPT
violations emulated under EPT; mapped through under shadow paging), the APIC
MSRs exit through the MSR bitmap, CPUID reports the APIC, interrupts from
the vCPU's APIC are injected, NMIs as virtual NMIs, and the APIC timer runs
in virtual time. pc is hw's default machine; `--machine isa` still works."""
from __future__ import annotations

import pytest

from monitor_rig import machine, run
from ringvisor.cpu.vmx import controls as C
from ringvisor.devices.apic_defs import Delivery
from ringvisor.monitors.hw import handlers
from ringvisor.vm import VmConfig

PAGING = ["ept", "shadow"]


def test_pc_is_the_default_machine_of_hw():
    assert VmConfig(kernel="k", engine="soft", technique="hw").machine_kind == "pc"
    assert VmConfig(kernel="k", engine="soft", technique="hw", machine="isa").machine_kind == "isa"


@pytest.mark.parametrize("paging", PAGING)
def test_the_apic_test_kernel_passes(test_kernels, paging):
    result, out = run(test_kernels / "apic.elf", technique="hw", paging=paging)
    assert result.status == 0, "\n".join(out)
    assert "apic done failures=0" in out
    for line in ("ok CPUID.1:EDX.APIC", "IA32_APIC_BASE=0xfee00900", "ok APIC enabled at 0xFEE00000, BSP",
                 "ok APIC ID = CPUID initial APIC ID", "ok local APIC timer: 3 periodic interrupts",
                 "ok I/O APIC version 0x20, 24 pins", "ok PIT through I/O APIC pin 2: 3 interrupts"):
        assert line in out
    mon = result.stats["monitor"]
    assert mon["exits_by_reason"]["msr_read"] >= 1            # RDMSR IA32_APIC_BASE
    assert mon["interrupts_injected"] >= 6                     # APIC timer and PIT through the I/O APIC
    if paging == "ept":
        assert mon["mmio_exits_by_page"]["0xfee00000"] > 0 and mon["mmio_exits_by_page"]["0xfec00000"] > 0
    else:
        assert "ept_violation" not in mon["exits_by_reason"]  # device pages mapped straight through
    cpu = result.stats["cpus"][0]
    assert cpu["exits"] == mon["exits"] and cpu["timer_expiries"] >= 3


def test_the_isa_machine_still_runs_under_hw(ringos):
    m = machine(ringos / "ringos.elf", "workload=tasks iters=1", technique="hw", machine="isa")
    try:
        assert m.platform.pc is None and m.engine.apic is None
        result = m.run()
    finally:
        m.close()
    assert result.status == 0
    assert "tasks done: 4 tasks, 3 lines, 1 killed, preemptions>0 yes" in m.output.decode()


@pytest.fixture
def hw_pc(test_kernels):
    m = machine(test_kernels / "apic.elf", technique="hw")
    yield m.engine
    m.close()


def test_an_nmi_is_injected_as_a_virtual_nmi(hw_pc):
    mon = hw_pc
    mon.apic.accept(Delivery.NMI, 0)
    mon._inject_pending_interrupt()
    assert mon.vmcs["VM_ENTRY_INTR_INFO_FIELD"] == C.intr_info(2, C.TYPE_NMI)
    assert not mon.apic.nmi_pending and mon.nmis_injected == 1
    assert mon.vmcs["PIN_BASED_VM_EXEC_CONTROL"] & C.PIN_VIRTUAL_NMIS


def test_an_nmi_while_nmis_are_blocked_waits_for_the_nmi_window(hw_pc):
    mon, v = hw_pc, hw_pc.vmcs
    v["GUEST_INTERRUPTIBILITY_INFO"] = C.BLOCKING_BY_NMI        # the guest's NMI handler runs
    mon.apic.accept(Delivery.NMI, 0)
    mon._inject_pending_interrupt()
    assert not v["VM_ENTRY_INTR_INFO_FIELD"] & C.INTR_VALID and mon.apic.nmi_pending
    assert v["CPU_BASED_VM_EXEC_CONTROL"] & C.CPU_NMI_WINDOW_EXITING
    handlers.nmi_window(mon, None)                              # its IRET: the window opens
    v["GUEST_INTERRUPTIBILITY_INFO"] = 0
    assert not v["CPU_BASED_VM_EXEC_CONTROL"] & C.CPU_NMI_WINDOW_EXITING
    mon._inject_pending_interrupt()
    assert v["VM_ENTRY_INTR_INFO_FIELD"] == C.intr_info(2, C.TYPE_NMI)


def test_an_nmi_wakes_a_halted_vcpu_with_interrupts_off(hw_pc):
    mon = hw_pc
    mon.vmcs["GUEST_RFLAGS"] = 2
    assert not mon._can_wake()
    mon.apic.accept(Delivery.NMI, 0)
    assert mon._can_wake()


def test_the_apic_msrs_exit_and_others_do_not(hw_pc):
    bitmap = hw_pc.vmcs["MSR_BITMAP"]
    mm = hw_pc.memory.mmap

    def bit(offset, msr):
        return mm[bitmap + offset + (msr >> 3)] >> (msr & 7) & 1
    for msr in (0x1B, 0x6E0, 0x800, 0x830, 0x8FF):
        assert bit(0, msr) and bit(2048, msr)
    assert not bit(0, 0x174) and not bit(2048, 0x174)            # SYSENTER_CS: the VMCS's
