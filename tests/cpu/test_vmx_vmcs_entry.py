"""The VMCS's encodings and VMREAD/VMWRITE rules (SDM 24.11.2, 30.3), the
capability MSRs (appendix A), and VM-entry checks on bad VMCS fields
(26.2-26.3): VMfailValid with the SDM's error numbers, or exit reason 33."""
from __future__ import annotations

import pytest

from cpu_rig import needs_as
from vmx_rig import C, CAP, VmxRig

from ringvisor.cpu.vmx import vmcs as V
from ringvisor.cpu.vmx.vmcs import FIELDS, Vmcs, VmxInstructionError

# A few encodings as the SDM's appendix B lists them.
SDM_ENCODINGS = {"VPID": 0x0000, "GUEST_CS_SELECTOR": 0x0802, "HOST_TR_SELECTOR": 0x0C0C,
                 "IO_BITMAP_A": 0x2000, "EPT_POINTER": 0x201A, "GUEST_PHYSICAL_ADDRESS": 0x2400,
                 "VMCS_LINK_POINTER": 0x2800, "PIN_BASED_VM_EXEC_CONTROL": 0x4000,
                 "EXCEPTION_BITMAP": 0x4004, "VM_EXIT_REASON": 0x4402,
                 "GUEST_INTERRUPTIBILITY_INFO": 0x4824, "CR0_GUEST_HOST_MASK": 0x6000,
                 "EXIT_QUALIFICATION": 0x6400, "GUEST_CR0": 0x6800, "GUEST_RIP": 0x681E,
                 "HOST_RIP": 0x6C16}


def test_encodings_match_the_sdm_and_their_own_bits():
    for name, enc in SDM_ENCODINGS.items():
        assert FIELDS[name] == enc
    prefix_type = {"GUEST_": V.GUEST, "HOST_": V.HOST}
    for name, enc in FIELDS.items():
        assert enc & 1 == 0                                  # full access
        assert enc >> 15 == 0
        for p, t in prefix_type.items():
            if name.startswith(p) and name != "GUEST_PHYSICAL_ADDRESS" and name != "GUEST_LINEAR_ADDRESS":
                assert V.field_type(enc) == t, name
        if name.endswith("_SELECTOR"):
            assert V.width(enc) == V.W16, name
        if name.endswith(("_LIMIT", "_AR_BYTES")):
            assert V.width(enc) == V.W32, name
    assert V.field_type(FIELDS["GUEST_PHYSICAL_ADDRESS"]) == V.EXIT_INFO
    assert len(set(FIELDS.values())) == len(FIELDS)


def test_vmread_vmwrite_widths_high_access_and_errors():
    v = Vmcs()
    v.write(FIELDS["GUEST_CS_SELECTOR"], 0x12345)
    assert v.read(FIELDS["GUEST_CS_SELECTOR"]) == 0x2345           # 16-bit field
    v.write(FIELDS["TSC_OFFSET"], 0x1122334455667788)
    assert v.read(FIELDS["TSC_OFFSET"] | 1) == 0x11223344           # high half of a 64-bit field
    v.write(FIELDS["TSC_OFFSET"] | 1, 0xAABBCCDD)
    assert v.read(FIELDS["TSC_OFFSET"]) == 0xAABBCCDD55667788
    with pytest.raises(VmxInstructionError) as e:
        v.write(FIELDS["VM_EXIT_REASON"], 1)
    assert e.value.number == 13                                    # VMWRITE to a read-only field
    with pytest.raises(VmxInstructionError) as e:
        v.read(0x7FFE)
    assert e.value.number == 12                                    # unsupported component


def test_capability_msrs_allowed_settings():
    must, may = CAP.allowed(CAP.IA32_VMX_PROCBASED_CTLS)
    assert must == 0x0401E172                                      # the default1 class (A.3.2)
    assert may & C.CPU_HLT_EXITING and may & C.CPU_ACTIVATE_SECONDARY
    true_must, _ = CAP.allowed(CAP.IA32_VMX_TRUE_PROCBASED_CTLS)
    assert must & ~true_must == C.CPU_CR3_LOAD_EXITING | C.CPU_CR3_STORE_EXITING
    assert CAP.MSRS[CAP.IA32_VMX_BASIC] >> 55 & 1                  # true controls exist
    assert CAP.MSRS[CAP.IA32_VMX_BASIC] >> 32 & 0x1FFF == 0x1000   # VMCS region size
    assert CAP.fits(CAP.IA32_VMX_TRUE_PINBASED_CTLS, 0)
    assert not CAP.fits(CAP.IA32_VMX_PINBASED_CTLS, 0)             # default1 bits 1, 2, 4
    with pytest.raises(ValueError):
        CAP.adjust(CAP.IA32_VMX_TRUE_PROCBASED_CTLS, 1 << 0)       # bit 0 is reserved (0)


@needs_as
@pytest.mark.parametrize("field,value,error", [
    ("CPU_BASED_VM_EXEC_CONTROL", 1, 7),            # a reserved control set
    ("CR3_TARGET_COUNT", 5, 7),
    ("EPT_POINTER", 0x5000 | 6 | 2 << 3, 7),         # walk length 3: not supported
    ("HOST_CR0", 0x00000031, 8),                    # host paging off
    ("HOST_CS_SELECTOR", 0x0B, 8),                  # RPL 3
    ("HOST_TR_SELECTOR", 0, 8),
])
def test_bad_controls_and_host_state_fail_with_the_sdm_error(field, value, error):
    rig = VmxRig("cpuid")
    if field == "EPT_POINTER":
        rig.controls(proc2=C.SEC_ENABLE_EPT)
    if field == "CPU_BASED_VM_EXEC_CONTROL":
        value |= rig.vmcs[field]
    rig.vmcs[field] = value
    with pytest.raises(VmxInstructionError) as e:
        rig.enter()
    assert e.value.number == error
    assert not rig.vmcs.launched and rig.cpu.vmx is None


@needs_as
@pytest.mark.parametrize("field,value,rule", [
    ("GUEST_CR0", 0x00000031, "CR0 fixed bits"),         # paging off without unrestricted guest
    ("GUEST_CR4", 0, "CR4 fixed bits"),                  # VMXE clear
    ("GUEST_CS_AR_BYTES", 0xC093, "CS: type"),           # a data segment in CS
    ("GUEST_TR_AR_BYTES", 0x0089, "TR: not a busy TSS"),
    ("GUEST_RFLAGS", 0x8002, "RFLAGS reserved bits"),
    ("GUEST_INTERRUPTIBILITY_INFO", 1, "blocking by STI with RFLAGS.IF clear"),
    ("VMCS_LINK_POINTER", 0, "VMCS link pointer"),
])
def test_bad_guest_state_fails_entry_with_exit_reason_33(field, value, rule):
    rig = VmxRig("cpuid")
    rig.vmcs[field] = value
    exit = rig.enter()
    assert exit.reason == 33 | 1 << 31 and exit.entry_failure and exit.detail.startswith(rule)
    assert rig.vmcs["VM_EXIT_REASON"] == 0x80000021
    assert rig.cpu.eip == 0xDEAD0000                      # host state loaded


@needs_as
def test_launch_state_rules():
    rig = VmxRig("cpuid\ncpuid")
    with pytest.raises(VmxInstructionError) as e:
        rig.enter(launch=False)
    assert e.value.number == 5                            # VMRESUME with a non-launched VMCS
    rig.enter(launch=True)
    with pytest.raises(VmxInstructionError) as e:
        rig.enter(launch=True)
    assert e.value.number == 4                            # VMLAUNCH with a non-clear VMCS
    rig.vmcs.clear()
    assert rig.enter(launch=True).reason == 10


@needs_as
def test_bad_injection_is_an_invalid_control():
    rig = VmxRig("cpuid")
    rig.vmcs["VM_ENTRY_INTR_INFO_FIELD"] = C.intr_info(3, C.TYPE_NMI)    # NMI must be vector 2
    with pytest.raises(VmxInstructionError) as e:
        rig.enter()
    assert e.value.number == 7
