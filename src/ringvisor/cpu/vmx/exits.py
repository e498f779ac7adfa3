"""VM exits (SDM vol. 3C ch. 27 and appendix C): the basic exit reasons,
the exit qualifications, and the record the CPU hands the monitor.

A VM exit is decided where the instruction or event is checked (protection
check, exception delivery, interrupt acceptance, the EPT walk) by raising
`VmExitSignal`; the engine catches it at the instruction boundary, saves
the guest state into the VMCS (guest RIP: the instruction that exited,
except for the trap-like exits), writes the exit-information fields and
returns to the monitor.
"""
from __future__ import annotations

from dataclasses import dataclass

# Basic exit reasons (appendix C).
REASONS = {
    0: "EXCEPTION_NMI", 1: "EXTERNAL_INTERRUPT", 2: "TRIPLE_FAULT", 3: "INIT", 4: "SIPI",
    5: "IO_SMI", 6: "OTHER_SMI", 7: "INTERRUPT_WINDOW", 8: "NMI_WINDOW", 9: "TASK_SWITCH",
    10: "CPUID", 11: "GETSEC", 12: "HLT", 13: "INVD", 14: "INVLPG", 15: "RDPMC", 16: "RDTSC",
    17: "RSM", 18: "VMCALL", 19: "VMCLEAR", 20: "VMLAUNCH", 21: "VMPTRLD", 22: "VMPTRST",
    23: "VMREAD", 24: "VMRESUME", 25: "VMWRITE", 26: "VMXOFF", 27: "VMXON", 28: "CR_ACCESS",
    29: "DR_ACCESS", 30: "IO_INSTRUCTION", 31: "MSR_READ", 32: "MSR_WRITE",
    33: "INVALID_GUEST_STATE", 34: "MSR_LOADING", 36: "MWAIT", 37: "MONITOR_TRAP_FLAG",
    39: "MONITOR", 40: "PAUSE", 41: "MACHINE_CHECK", 43: "TPR_BELOW_THRESHOLD",
    44: "APIC_ACCESS", 45: "VIRTUALIZED_EOI", 46: "GDTR_IDTR", 47: "LDTR_TR",
    48: "EPT_VIOLATION", 49: "EPT_MISCONFIG", 50: "INVEPT", 51: "RDTSCP",
    52: "PREEMPTION_TIMER", 53: "INVVPID", 54: "WBINVD", 55: "XSETBV",
}
R = {name: number for number, name in REASONS.items()}
ENTRY_FAILURE = 1 << 31           # exit reason bit 31: VM-entry failure

# Exits that happen after the instruction completed (guest RIP past it).
TRAP_LIKE = {R["EXTERNAL_INTERRUPT"], R["INTERRUPT_WINDOW"], R["NMI_WINDOW"],
             R["PREEMPTION_TIMER"], R["MONITOR_TRAP_FLAG"], R["TRIPLE_FAULT"]}

# CR-access qualification (table 27-3): access types.
CR_MOV_TO, CR_MOV_FROM, CR_CLTS, CR_LMSW = 0, 1, 2, 3


def cr_qualification(cr: int, access: int, gpr: int = 0, lmsw_data: int = 0,
                     lmsw_memory: bool = False) -> int:
    return cr | access << 4 | (lmsw_memory << 6) | gpr << 8 | (lmsw_data & 0xFFFF) << 16


def dr_qualification(dr: int, from_dr: bool, gpr: int) -> int:
    """MOV DR (table 27-4): DR number 2:0, direction 4 (1 = MOV from DR), GPR 11:8."""
    return dr | (from_dr << 4) | gpr << 8


def io_qualification(port: int, size: int, is_in: bool, string: bool, rep: bool,
                     immediate: bool) -> int:
    """I/O instruction (table 27-5): size-1 in 2:0, direction 3 (1 = IN),
    string 4, REP 5, operand encoding 6 (1 = immediate), port 31:16."""
    return (size - 1) | is_in << 3 | string << 4 | rep << 5 | immediate << 6 | port << 16


def decode_io(q: int) -> dict:
    return {"port": q >> 16, "size": (q & 7) + 1, "in": bool(q & 8), "string": bool(q & 16),
            "rep": bool(q & 32), "immediate": bool(q & 64)}


def decode_cr(q: int) -> dict:
    return {"cr": q & 15, "access": ("mov to", "mov from", "clts", "lmsw")[(q >> 4) & 3],
            "gpr": (q >> 8) & 15, "lmsw_data": q >> 16}


# EPT-violation qualification (table 27-7).
EPT_READ, EPT_WRITE, EPT_FETCH = 1 << 0, 1 << 1, 1 << 2
EPT_READABLE, EPT_WRITABLE, EPT_EXECUTABLE = 1 << 3, 1 << 4, 1 << 5
EPT_GLA_VALID, EPT_GLA_TRANSLATED = 1 << 7, 1 << 8


class VmExitSignal(Exception):
    """Raised inside the CPU where an exit is decided."""

    def __init__(self, reason: int, qualification: int = 0, *, intr_info: int = 0,
                 intr_error: int = 0, gpa: int = 0, gla: int = 0, trap_like: bool = False):
        super().__init__(REASONS.get(reason & 0xFFFF, reason))
        self.reason, self.qualification = reason, qualification
        self.intr_info, self.intr_error, self.gpa, self.gla = intr_info, intr_error, gpa, gla
        self.trap_like = trap_like or reason in TRAP_LIKE
        self.rip: int | None = None       # where the guest resumes, when not the instruction's start
        self.length = 0                   # VM-exit instruction length
        self.vectoring: tuple[int, int] | None = None
        self.instruction_info = 0         # VM-exit instruction information (27.2.5)


@dataclass(slots=True)
class VmExit:
    """What the monitor finds after VMLAUNCH/VMRESUME returned: the exit
    reason and qualification (also in the VMCS's exit-information fields)."""
    reason: int
    qualification: int = 0
    instruction_length: int = 0
    detail: str = ""               # a VM-entry failure: the rule the guest state broke

    @property
    def basic(self) -> int:
        return self.reason & 0xFFFF

    @property
    def name(self) -> str:
        return REASONS.get(self.basic, str(self.basic))

    @property
    def entry_failure(self) -> bool:
        return bool(self.reason & ENTRY_FAILURE)
