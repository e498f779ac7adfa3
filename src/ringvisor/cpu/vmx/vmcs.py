"""The VMCS (SDM vol. 3C ch. 24, appendix B): its fields by encoding, and
the structure the monitor fills with VMWRITE and the CPU reads at VM entry.

A field's encoding says what it is (SDM 24.11.2): bit 0 the access type
(1 = the high 32 bits of a 64-bit field), bits 9:1 the index, bits 11:10
the type (control, VM-exit information, guest state, host state) and bits
14:13 the width (16-bit, 64-bit, 32-bit, natural). The table below names
each field the soft CPU implements; width and type come from the encoding.
"""
from __future__ import annotations

CONTROL, EXIT_INFO, GUEST, HOST = 0, 1, 2, 3
W16, W64, W32, NATURAL = 0, 1, 2, 3
# This CPU is IA-32: natural-width fields hold 32 bits (SDM 24.11.2 says
# the high half reads as 0 on processors without Intel 64).
WIDTH_BITS = {W16: 16, W64: 64, W32: 32, NATURAL: 32}

FIELDS = {
    # 16-bit control
    "VPID": 0x0000,
    # 16-bit guest state
    "GUEST_ES_SELECTOR": 0x0800, "GUEST_CS_SELECTOR": 0x0802, "GUEST_SS_SELECTOR": 0x0804,
    "GUEST_DS_SELECTOR": 0x0806, "GUEST_FS_SELECTOR": 0x0808, "GUEST_GS_SELECTOR": 0x080A,
    "GUEST_LDTR_SELECTOR": 0x080C, "GUEST_TR_SELECTOR": 0x080E,
    # 16-bit host state
    "HOST_ES_SELECTOR": 0x0C00, "HOST_CS_SELECTOR": 0x0C02, "HOST_SS_SELECTOR": 0x0C04,
    "HOST_DS_SELECTOR": 0x0C06, "HOST_FS_SELECTOR": 0x0C08, "HOST_GS_SELECTOR": 0x0C0A,
    "HOST_TR_SELECTOR": 0x0C0C,
    # 64-bit control
    "IO_BITMAP_A": 0x2000, "IO_BITMAP_B": 0x2002, "MSR_BITMAP": 0x2004,
    "VM_EXIT_MSR_STORE_ADDR": 0x2006, "VM_EXIT_MSR_LOAD_ADDR": 0x2008,
    "VM_ENTRY_MSR_LOAD_ADDR": 0x200A, "TSC_OFFSET": 0x2010, "EPT_POINTER": 0x201A,
    # 64-bit read-only data
    "GUEST_PHYSICAL_ADDRESS": 0x2400,
    # 64-bit guest state
    "VMCS_LINK_POINTER": 0x2800, "GUEST_IA32_DEBUGCTL": 0x2802, "GUEST_IA32_EFER": 0x2806,
    # 32-bit control
    "PIN_BASED_VM_EXEC_CONTROL": 0x4000, "CPU_BASED_VM_EXEC_CONTROL": 0x4002,
    "EXCEPTION_BITMAP": 0x4004, "PAGE_FAULT_ERROR_CODE_MASK": 0x4006,
    "PAGE_FAULT_ERROR_CODE_MATCH": 0x4008, "CR3_TARGET_COUNT": 0x400A,
    "VM_EXIT_CONTROLS": 0x400C, "VM_EXIT_MSR_STORE_COUNT": 0x400E,
    "VM_EXIT_MSR_LOAD_COUNT": 0x4010, "VM_ENTRY_CONTROLS": 0x4012,
    "VM_ENTRY_MSR_LOAD_COUNT": 0x4014, "VM_ENTRY_INTR_INFO_FIELD": 0x4016,
    "VM_ENTRY_EXCEPTION_ERROR_CODE": 0x4018, "VM_ENTRY_INSTRUCTION_LEN": 0x401A,
    "TPR_THRESHOLD": 0x401C, "SECONDARY_VM_EXEC_CONTROL": 0x401E,
    "PLE_GAP": 0x4020, "PLE_WINDOW": 0x4022,
    # 32-bit read-only data
    "VM_INSTRUCTION_ERROR": 0x4400, "VM_EXIT_REASON": 0x4402, "VM_EXIT_INTR_INFO": 0x4404,
    "VM_EXIT_INTR_ERROR_CODE": 0x4406, "IDT_VECTORING_INFO_FIELD": 0x4408,
    "IDT_VECTORING_ERROR_CODE": 0x440A, "VM_EXIT_INSTRUCTION_LEN": 0x440C,
    "VMX_INSTRUCTION_INFO": 0x440E,
    # 32-bit guest state
    "GUEST_ES_LIMIT": 0x4800, "GUEST_CS_LIMIT": 0x4802, "GUEST_SS_LIMIT": 0x4804,
    "GUEST_DS_LIMIT": 0x4806, "GUEST_FS_LIMIT": 0x4808, "GUEST_GS_LIMIT": 0x480A,
    "GUEST_LDTR_LIMIT": 0x480C, "GUEST_TR_LIMIT": 0x480E, "GUEST_GDTR_LIMIT": 0x4810,
    "GUEST_IDTR_LIMIT": 0x4812,
    "GUEST_ES_AR_BYTES": 0x4814, "GUEST_CS_AR_BYTES": 0x4816, "GUEST_SS_AR_BYTES": 0x4818,
    "GUEST_DS_AR_BYTES": 0x481A, "GUEST_FS_AR_BYTES": 0x481C, "GUEST_GS_AR_BYTES": 0x481E,
    "GUEST_LDTR_AR_BYTES": 0x4820, "GUEST_TR_AR_BYTES": 0x4822,
    "GUEST_INTERRUPTIBILITY_INFO": 0x4824, "GUEST_ACTIVITY_STATE": 0x4826,
    "GUEST_SYSENTER_CS": 0x482A, "VMX_PREEMPTION_TIMER_VALUE": 0x482E,
    # 32-bit host state
    "HOST_IA32_SYSENTER_CS": 0x4C00,
    # natural-width control
    "CR0_GUEST_HOST_MASK": 0x6000, "CR4_GUEST_HOST_MASK": 0x6002,
    "CR0_READ_SHADOW": 0x6004, "CR4_READ_SHADOW": 0x6006,
    "CR3_TARGET_VALUE0": 0x6008, "CR3_TARGET_VALUE1": 0x600A,
    "CR3_TARGET_VALUE2": 0x600C, "CR3_TARGET_VALUE3": 0x600E,
    # natural-width read-only data
    "EXIT_QUALIFICATION": 0x6400, "IO_RCX": 0x6402, "IO_RSI": 0x6404, "IO_RDI": 0x6406,
    "IO_RIP": 0x6408, "GUEST_LINEAR_ADDRESS": 0x640A,
    # natural-width guest state
    "GUEST_CR0": 0x6800, "GUEST_CR3": 0x6802, "GUEST_CR4": 0x6804,
    "GUEST_ES_BASE": 0x6806, "GUEST_CS_BASE": 0x6808, "GUEST_SS_BASE": 0x680A,
    "GUEST_DS_BASE": 0x680C, "GUEST_FS_BASE": 0x680E, "GUEST_GS_BASE": 0x6810,
    "GUEST_LDTR_BASE": 0x6812, "GUEST_TR_BASE": 0x6814, "GUEST_GDTR_BASE": 0x6816,
    "GUEST_IDTR_BASE": 0x6818, "GUEST_DR7": 0x681A, "GUEST_RSP": 0x681C, "GUEST_RIP": 0x681E,
    "GUEST_RFLAGS": 0x6820, "GUEST_PENDING_DBG_EXCEPTIONS": 0x6822,
    "GUEST_SYSENTER_ESP": 0x6824, "GUEST_SYSENTER_EIP": 0x6826,
    # natural-width host state
    "HOST_CR0": 0x6C00, "HOST_CR3": 0x6C02, "HOST_CR4": 0x6C04, "HOST_FS_BASE": 0x6C06,
    "HOST_GS_BASE": 0x6C08, "HOST_TR_BASE": 0x6C0A, "HOST_GDTR_BASE": 0x6C0C,
    "HOST_IDTR_BASE": 0x6C0E, "HOST_IA32_SYSENTER_ESP": 0x6C10,
    "HOST_IA32_SYSENTER_EIP": 0x6C12, "HOST_RSP": 0x6C14, "HOST_RIP": 0x6C16,
}
NAMES = {enc: name for name, enc in FIELDS.items()}
# The segment registers in the order of the guest-state area's encodings.
SEGMENTS = ("ES", "CS", "SS", "DS", "FS", "GS", "LDTR", "TR")

# VM-instruction error numbers (SDM 30.4).
VMERR = {
    "VMCALL_IN_ROOT": 1, "VMLAUNCH_NONCLEAR": 4, "VMRESUME_NONLAUNCHED": 5,
    "ENTRY_INVALID_CONTROL": 7, "ENTRY_INVALID_HOST_STATE": 8,
    "UNSUPPORTED_COMPONENT": 12, "WRITE_READ_ONLY": 13, "ENTRY_MOV_SS_BLOCKING": 26,
    "INVALID_INVEPT_INVVPID_OPERAND": 28,
}


def width(encoding: int) -> int:
    return (encoding >> 13) & 3


def field_type(encoding: int) -> int:
    return (encoding >> 10) & 3


def high_access(encoding: int) -> bool:
    return bool(encoding & 1)


class VmxInstructionError(Exception):
    """VMfailValid: the instruction failed with this VM-instruction error."""

    def __init__(self, number: int, what: str = ""):
        super().__init__(f"VM-instruction error {number}" + (f": {what}" if what else ""))
        self.number = number


class Vmcs:
    """One VMCS region's contents. The monitor uses `write`/`read` (VMWRITE/
    VMREAD: the SDM's checks on the encoding and on read-only fields); the
    CPU reads and writes `f` directly, as processors keep the current VMCS
    in their own format (SDM 24.2)."""

    REVISION = 1                   # IA32_VMX_BASIC[30:0] of this CPU

    def __init__(self):
        self.f: dict[int, int] = dict.fromkeys(FIELDS.values(), 0)
        self.f[FIELDS["VMCS_LINK_POINTER"]] = 0xFFFFFFFFFFFFFFFF
        self.launched = False      # "clear" until VMLAUNCH succeeds (SDM 24.1)

    def __getitem__(self, name: str) -> int:
        return self.f[FIELDS[name]]

    def __setitem__(self, name: str, value: int) -> None:
        enc = FIELDS[name]
        self.f[enc] = value & ((1 << WIDTH_BITS[width(enc)]) - 1)

    def _full(self, encoding: int) -> int:
        enc = encoding & ~1 if width(encoding) == W64 else encoding
        if enc not in self.f:
            raise VmxInstructionError(VMERR["UNSUPPORTED_COMPONENT"], f"encoding {encoding:#06x}")
        return enc

    def read(self, encoding: int) -> int:
        """VMREAD."""
        enc = self._full(encoding)
        v = self.f[enc]
        return v >> 32 if high_access(encoding) and width(encoding) == W64 else v

    def write(self, encoding: int, value: int) -> None:
        """VMWRITE: read-only data fields refuse it (this CPU does not set
        IA32_VMX_MISC bit 29)."""
        enc = self._full(encoding)
        if field_type(enc) == EXIT_INFO:
            raise VmxInstructionError(VMERR["WRITE_READ_ONLY"], NAMES[enc])
        if high_access(encoding) and width(encoding) == W64:
            self.f[enc] = (self.f[enc] & 0xFFFFFFFF) | (value & 0xFFFFFFFF) << 32
        else:
            self.f[enc] = value & ((1 << WIDTH_BITS[width(enc)]) - 1)

    def clear(self) -> None:
        """VMCLEAR: the launch state becomes clear."""
        self.launched = False
