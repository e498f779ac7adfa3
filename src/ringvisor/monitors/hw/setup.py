"""The VMCS the hw monitor runs its guest with, and the host-side pages it
needs (I/O and MSR bitmaps, EPT tables, the host's page directory), carved
from the monitor's region at the top of guest RAM (monitors/common/region.py),
which the guest's memory map hides and the EPT does not map."""
from __future__ import annotations

from ringvisor.cpu.vmx import capabilities as CAP
from ringvisor.cpu.vmx import controls as C
from ringvisor.cpu.vmx.ept import identity_tables
from ringvisor.cpu.vmx.vmcs import Vmcs
from ringvisor.monitors.hw import vapic

VPID = 1
HOST_CS, HOST_DS, HOST_TR = 0x08, 0x10, 0x18
CR0_NE, CR0_PE, CR0_PG = 0x20, 0x01, 0x80000000
MSR_TSC = 0x10


def build(region, ram_size: int, paging: str, apic: bool = False) -> Vmcs:
    """A VMCS with the monitor's controls and host state; the guest area
    is filled by set_state. `apic`: the vCPU has a local APIC (the pc
    machine): its MSRs exit, and NMIs are virtual NMIs (vapic.py)."""
    v = Vmcs()
    frame = region.alloc_frame
    # I/O: every port exits (the devices are the machine's). MSRs: only a
    # write to the TSC exits (it becomes the TSC offset); the SYSENTER MSRs
    # are the VMCS's guest fields, the rest fault as on bare hardware.
    io_a, io_b, msrs = frame(), frame(), frame()
    region.mm[io_a:io_a + 0x1000] = b"\xff" * 0x1000
    region.mm[io_b:io_b + 0x1000] = b"\xff" * 0x1000
    region.mm[msrs + 2048 + (MSR_TSC >> 3)] |= 1 << (MSR_TSC & 7)
    pin = C.PIN_EXTERNAL_INTERRUPT_EXITING | C.PIN_PREEMPTION_TIMER
    if apic:
        vapic.intercept_msrs(region, msrs)
        pin |= C.PIN_NMI_EXITING | C.PIN_VIRTUAL_NMIS
    v["IO_BITMAP_A"], v["IO_BITMAP_B"], v["MSR_BITMAP"] = io_a, io_b, msrs
    proc = C.CPU_HLT_EXITING | C.CPU_USE_IO_BITMAPS | C.CPU_USE_MSR_BITMAPS
    proc2 = C.SEC_ENABLE_VPID
    if paging == "ept":
        # The guest's RAM, identity-mapped; the monitor's region is a hole.
        root = identity_tables(frame, region.write_u64, ram_size, holes=[(region.phys, region.end)])
        v["EPT_POINTER"] = root | 6 | 3 << 3
        proc2 |= C.SEC_ENABLE_EPT | C.SEC_UNRESTRICTED_GUEST
    else:
        proc |= C.CPU_CR3_LOAD_EXITING | C.CPU_CR3_STORE_EXITING | C.CPU_INVLPG_EXITING
    v["VPID"] = VPID
    v["PIN_BASED_VM_EXEC_CONTROL"] = CAP.adjust(
        CAP.IA32_VMX_TRUE_PINBASED_CTLS, pin)
    v["CPU_BASED_VM_EXEC_CONTROL"] = CAP.adjust(CAP.IA32_VMX_TRUE_PROCBASED_CTLS,
                                                proc | C.CPU_ACTIVATE_SECONDARY)
    v["SECONDARY_VM_EXEC_CONTROL"] = CAP.adjust(CAP.IA32_VMX_PROCBASED_CTLS2, proc2)
    v["VM_EXIT_CONTROLS"] = CAP.adjust(CAP.IA32_VMX_TRUE_EXIT_CTLS,
                                       C.EXIT_ACK_INTERRUPT_ON_EXIT | C.EXIT_SAVE_PREEMPTION_TIMER)
    v["VM_ENTRY_CONTROLS"] = CAP.adjust(CAP.IA32_VMX_TRUE_ENTRY_CTLS, 0)
    # The monitor owns CR0.NE (VMX needs it set) and CR4.VMXE; the guest reads its own values.
    v["CR0_GUEST_HOST_MASK"] = CR0_NE
    v["CR4_GUEST_HOST_MASK"] = CAP.CR4_VMXE
    # Host state: flat segments, paging on a 4 MiB-page identity map.
    pd = frame()
    for i in range(1024):
        region.write_u32(pd + 4 * i, (i << 22) | 0x83)        # P, RW, PS
    v["HOST_CR0"], v["HOST_CR3"], v["HOST_CR4"] = CR0_PG | CR0_NE | CR0_PE | 0x10, pd, \
        CAP.CR4_VMXE | 0x10
    v["HOST_CS_SELECTOR"], v["HOST_TR_SELECTOR"] = HOST_CS, HOST_TR
    for s in ("SS", "DS", "ES"):
        v[f"HOST_{s}_SELECTOR"] = HOST_DS
    return v


def sibling(v: Vmcs, vpid: int) -> Vmcs:
    """Another vCPU's VMCS (--cpus N): the same controls, host state,
    bitmaps and EPT (one guest-physical space), its own VPID so the CPUs'
    tagged translations stay apart; its guest area is filled by set_state."""
    other = Vmcs()
    other.f = dict(v.f)
    other["VPID"] = vpid
    return other
