"""The vCPU's local APIC under the hw monitor, as KVM's in-kernel LAPIC
(arch/x86/kvm/lapic.c) serves a VT-x guest without APIC virtualization.

On the pc machine every vCPU has the machine's local APIC model
(devices/lapic.py) as its virtual APIC; the soft CPU underneath, in root
operation, has none of its own (the monitor is its only user):

- the xAPIC page (0xFEE00000) and the I/O APIC (0xFEC00000) lie above the
  guest's RAM, which the EPT does not map: an access is an EPT violation
  and the monitor emulates the instruction against the MMIO bus (mmio.py),
  where the APIC bus answers for the vCPU now running. Under shadow paging
  the shadow tables map the device page as it is and the soft CPU's
  physical access reaches the same bus without an exit;
- the APIC MSRs (IA32_APIC_BASE 0x1B, IA32_TSC_DEADLINE 0x6E0, the x2APIC
  range 0x800-0x8FF) exit for reads and writes through the MSR bitmap and
  are answered by the vCPU's APIC (#GP where it says so);
- CPUID leaf 1 reports the APIC, its initial ID in EBX[31:24];
- interrupts the APIC accepts are injected with the VM-entry
  interruption-information field when the guest can take them (RFLAGS.IF,
  no STI/MOV SS blocking), else interrupt-window exiting asks for the
  moment it can; NMIs (LINT1, NMI IPIs) likewise with virtual NMIs: the
  CPU blocks further NMIs until the guest's IRET, and NMI-window exiting
  waits for that;
- the APIC timer runs on the virtual clock while the guest runs: the
  machine's slice (the VMX-preemption timer) ends at the next edge of any
  timer, the APIC timers included (SoftPlatform.budget).
"""
from __future__ import annotations

from ringvisor.cpu.vmx import controls as C
from ringvisor.devices.apic_defs import MSR_APIC_BASE, MSR_TSC_DEADLINE, X2APIC_MSRS
from ringvisor.devices.lapic import cpuid1

# MSR-bitmap quarters (SDM 24.6.9): read-low, read-high, write-low, write-high.
READ_LOW, WRITE_LOW = 0, 2048
INTERCEPTED_MSRS = (MSR_APIC_BASE, MSR_TSC_DEADLINE, *range(*X2APIC_MSRS))
GP = 13


def intercept_msrs(region, bitmap: int) -> None:
    """Reads and writes of the APIC MSRs exit (all below 0x2000: the low quarters)."""
    for index in INTERCEPTED_MSRS:
        for quarter in (READ_LOW, WRITE_LOW):
            region.mm[bitmap + quarter + (index >> 3)] |= 1 << (index & 7)


def is_apic_msr(index: int) -> bool:
    return index in (MSR_APIC_BASE, MSR_TSC_DEADLINE) or X2APIC_MSRS[0] <= index < X2APIC_MSRS[1]


def cpuid_leaf1(mon, ebx: int, ecx: int, edx: int) -> tuple[int, int, int]:
    return cpuid1(mon.apic, ebx, ecx, edx)


def inject_nmi(mon) -> bool:
    """An NMI the APIC latched: injected unless the guest still blocks NMIs
    (its handler has not IRETed: NMI-window exiting waits) or a MOV SS
    shadow is in effect. True if the entry delivers one."""
    v, apic = mon.vmcs, mon.apic
    if not apic.nmi_pending:
        return False
    blocked = v["GUEST_INTERRUPTIBILITY_INFO"] & (C.BLOCKING_BY_NMI | C.BLOCKING_BY_MOV_SS)
    if blocked:
        v["CPU_BASED_VM_EXEC_CONTROL"] |= C.CPU_NMI_WINDOW_EXITING
        return False
    apic.take_nmi()
    v["VM_ENTRY_INTR_INFO_FIELD"] = C.intr_info(2, C.TYPE_NMI)
    v["GUEST_ACTIVITY_STATE"] = C.ACTIVE
    mon.nmis_injected += 1
    return True
