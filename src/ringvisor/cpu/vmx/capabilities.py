"""The VMX capability MSRs (SDM vol. 3C appendix A) of the soft CPU, as data.

Each control MSR gives the allowed-0 settings in bits 31:0 (a 1 there: the
control must be 1) and the allowed-1 settings in bits 63:32 (a 0 there: the
control must be 0). The "default1" controls (A.2) are fixed at 1 in the
plain MSRs; the TRUE_* MSRs (IA32_VMX_BASIC bit 55 set) let some of them be 0.
VM entry checks every control against these (SDM 26.2.1).
"""
from __future__ import annotations

from ringvisor.cpu.vmx import controls as C
from ringvisor.cpu.vmx.vmcs import Vmcs

IA32_FEATURE_CONTROL = 0x3A
IA32_VMX_BASIC = 0x480
IA32_VMX_PINBASED_CTLS = 0x481
IA32_VMX_PROCBASED_CTLS = 0x482
IA32_VMX_EXIT_CTLS = 0x483
IA32_VMX_ENTRY_CTLS = 0x484
IA32_VMX_MISC = 0x485
IA32_VMX_CR0_FIXED0, IA32_VMX_CR0_FIXED1 = 0x486, 0x487
IA32_VMX_CR4_FIXED0, IA32_VMX_CR4_FIXED1 = 0x488, 0x489
IA32_VMX_VMCS_ENUM = 0x48A
IA32_VMX_PROCBASED_CTLS2 = 0x48B
IA32_VMX_EPT_VPID_CAP = 0x48C
IA32_VMX_TRUE_PINBASED_CTLS = 0x48D
IA32_VMX_TRUE_PROCBASED_CTLS = 0x48E
IA32_VMX_TRUE_EXIT_CTLS = 0x48F
IA32_VMX_TRUE_ENTRY_CTLS = 0x490

# Default1 classes (SDM A.2-A.5).
PIN_DEFAULT1 = 0x00000016
PROC_DEFAULT1 = 0x0401E172
EXIT_DEFAULT1 = 0x00036DFF
ENTRY_DEFAULT1 = 0x000011FF

# What this CPU implements (may be 1). Not offered: MWAIT, MONITOR and RDPMC
# exiting (this Pentium-class CPU has no such instructions: they are #UD),
# pause-loop exiting (PAUSE exiting, every PAUSE, serves the same purpose), the TPR shadow and CR8 exiting (no APIC), descriptor-table
# exiting and RDTSCP (not modelled).
PIN_ALLOWED1 = PIN_DEFAULT1 | C.PIN_EXTERNAL_INTERRUPT_EXITING | C.PIN_NMI_EXITING | \
    C.PIN_VIRTUAL_NMIS | C.PIN_PREEMPTION_TIMER
PROC_ALLOWED1 = PROC_DEFAULT1 | C.CPU_INTERRUPT_WINDOW_EXITING | C.CPU_USE_TSC_OFFSETTING | \
    C.CPU_HLT_EXITING | C.CPU_INVLPG_EXITING | C.CPU_RDTSC_EXITING | C.CPU_CR3_LOAD_EXITING | C.CPU_CR3_STORE_EXITING | \
    C.CPU_NMI_WINDOW_EXITING | C.CPU_MOV_DR_EXITING | C.CPU_UNCONDITIONAL_IO_EXITING | \
    C.CPU_USE_IO_BITMAPS | C.CPU_USE_MSR_BITMAPS | C.CPU_MONITOR_TRAP_FLAG | \
    C.CPU_PAUSE_EXITING | C.CPU_ACTIVATE_SECONDARY
PROC2_ALLOWED1 = C.SEC_ENABLE_EPT | C.SEC_ENABLE_VPID | C.SEC_WBINVD_EXITING | \
    C.SEC_UNRESTRICTED_GUEST
EXIT_ALLOWED1 = EXIT_DEFAULT1 | C.EXIT_ACK_INTERRUPT_ON_EXIT | C.EXIT_SAVE_EFER | \
    C.EXIT_LOAD_EFER | C.EXIT_SAVE_PREEMPTION_TIMER
ENTRY_ALLOWED1 = ENTRY_DEFAULT1 | C.ENTRY_LOAD_EFER
# The "true" MSRs: default1 bits that may be 0 (A.3.1: pin 1,2,4; proc 1,4-6,
# 8,13-16,26 except CR3-load/store, which are the ones a monitor clears).
TRUE_PROC_DEFAULT1 = PROC_DEFAULT1 & ~(C.CPU_CR3_LOAD_EXITING | C.CPU_CR3_STORE_EXITING)
TRUE_EXIT_DEFAULT1 = EXIT_DEFAULT1 & ~C.EXIT_SAVE_DEBUG_CONTROLS
TRUE_ENTRY_DEFAULT1 = ENTRY_DEFAULT1 & ~C.ENTRY_LOAD_DEBUG_CONTROLS

CR0_FIXED0 = 0x80000021            # PG, NE, PE (PE and PG relaxed by "unrestricted guest")
CR0_FIXED1 = 0xFFFFFFFF
CR4_FIXED0 = 0x00002000            # VMXE
CR4_FIXED1 = 0x0000209F            # VME PVI TSD DE PSE PGE (this CPU's CR4) and VMXE
CR4_VMXE = 0x2000


def _ctls(allowed0: int, allowed1: int) -> int:
    return allowed1 << 32 | allowed0


# EPT/VPID capabilities (A.10): execute-only (0), page-walk length 4 (6),
# WB memory type (14), 2-MByte pages (16), INVEPT (20) single-context (25)
# and all-context (26), accessed and dirty flags (21), INVVPID (32),
# individual-address (40), single-context (41), all-context (42).
EPT_VPID_CAP = (1 << 0) | (1 << 6) | (1 << 14) | (1 << 16) | (1 << 20) | (1 << 21) | \
    (1 << 25) | (1 << 26) | (1 << 32) | (1 << 40) | (1 << 41) | (1 << 42)

MSRS = {
    # BASIC: revision, VMCS region size 4096 (44:32), memory type WB (53:50 = 6),
    # INS/OUTS information on exits (54), true controls (55).
    IA32_VMX_BASIC: Vmcs.REVISION | 0x1000 << 32 | 6 << 50 | 1 << 54 | 1 << 55,
    IA32_VMX_PINBASED_CTLS: _ctls(PIN_DEFAULT1, PIN_ALLOWED1),
    IA32_VMX_PROCBASED_CTLS: _ctls(PROC_DEFAULT1, PROC_ALLOWED1),
    IA32_VMX_EXIT_CTLS: _ctls(EXIT_DEFAULT1, EXIT_ALLOWED1),
    IA32_VMX_ENTRY_CTLS: _ctls(ENTRY_DEFAULT1, ENTRY_ALLOWED1),
    # MISC: TSC-to-preemption-timer ratio 0 (4:0), activity states HLT (6),
    # shutdown (7), CR3-target values 4 (24:16).
    IA32_VMX_MISC: (1 << 6) | (1 << 7) | 4 << 16,
    IA32_VMX_CR0_FIXED0: CR0_FIXED0, IA32_VMX_CR0_FIXED1: CR0_FIXED1,
    IA32_VMX_CR4_FIXED0: CR4_FIXED0, IA32_VMX_CR4_FIXED1: CR4_FIXED1,
    IA32_VMX_VMCS_ENUM: 0x17 << 1,                # highest index used (VMX preemption timer)
    IA32_VMX_PROCBASED_CTLS2: _ctls(0, PROC2_ALLOWED1),
    IA32_VMX_EPT_VPID_CAP: EPT_VPID_CAP,
    IA32_VMX_TRUE_PINBASED_CTLS: _ctls(PIN_DEFAULT1 & ~0x16, PIN_ALLOWED1),
    IA32_VMX_TRUE_PROCBASED_CTLS: _ctls(TRUE_PROC_DEFAULT1, PROC_ALLOWED1),
    IA32_VMX_TRUE_EXIT_CTLS: _ctls(TRUE_EXIT_DEFAULT1, EXIT_ALLOWED1),
    IA32_VMX_TRUE_ENTRY_CTLS: _ctls(TRUE_ENTRY_DEFAULT1, ENTRY_ALLOWED1),
}

# Which MSR bounds each control field, with the true MSRs in force (BASIC[55]).
CONTROL_MSR = {
    "PIN_BASED_VM_EXEC_CONTROL": IA32_VMX_TRUE_PINBASED_CTLS,
    "CPU_BASED_VM_EXEC_CONTROL": IA32_VMX_TRUE_PROCBASED_CTLS,
    "SECONDARY_VM_EXEC_CONTROL": IA32_VMX_PROCBASED_CTLS2,
    "VM_EXIT_CONTROLS": IA32_VMX_TRUE_EXIT_CTLS,
    "VM_ENTRY_CONTROLS": IA32_VMX_TRUE_ENTRY_CTLS,
}


def allowed(msr: int) -> tuple[int, int]:
    """(must be 1, may be 1) of a control MSR."""
    v = MSRS[msr]
    return v & 0xFFFFFFFF, v >> 32


def fits(msr: int, value: int) -> bool:
    must, may = allowed(msr)
    return value & must == must and value & ~may == 0


def adjust(msr: int, wanted: int) -> int:
    """What a monitor writes for the controls it wants (as KVM's
    adjust_vmx_controls): the required 1s added; raises if it wants more
    than the CPU has."""
    must, may = allowed(msr)
    if wanted & ~may:
        raise ValueError(f"controls {wanted & ~may:#x} not supported by MSR {msr:#x}")
    return wanted | must
