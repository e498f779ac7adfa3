"""The hw monitor's exit handlers on tiny flat guests (32-bit protected
mode, paging off): what CPUID answers, what an unknown hypercall and a VMX
instruction get, a TSC write becoming the TSC offset. Each guest ends with
`out %al, $0xf4`, its status being the byte under test."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from monitor_rig import run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cpu"))   # the CPU tests' assembler
from cpu_rig import asm, needs_as  # noqa: E402

pytestmark = needs_as
EXIT = "\nout 0xf4, al\nhlt"


def status(tmp_path, code: str) -> int:
    image = tmp_path / "guest.bin"
    image.write_bytes(asm(code + EXIT, org=0x100000))
    result, _ = run(image, technique="hw", image_format="flat")
    return result.status


def test_cpuid_vendor_leaf_and_hypervisor_bit(tmp_path):
    # "ringvisorVMM": EBX "ring", ECX "viso", EDX "rVMM"
    assert status(tmp_path, "mov eax, 0x40000000\ncpuid\nmov eax, ebx") == ord("r")
    assert status(tmp_path, "mov eax, 0x40000000\ncpuid\nmov eax, ecx") == ord("v")
    assert status(tmp_path, "mov eax, 0x40000000\ncpuid\nmov eax, edx\nshr eax, 8") == ord("V")
    assert status(tmp_path, "mov eax, 1\ncpuid\nmov eax, ecx\nshr eax, 24") == 0x80   # bit 31
    assert status(tmp_path, "mov eax, 0x40000001\ncpuid\nor eax, ebx\nor eax, ecx") == 0


def test_unknown_hypercall_answers_minus_kvm_enosys(tmp_path):
    assert status(tmp_path, "mov eax, 0x1234\nvmcall") == (-1000) & 0xFF


def test_hypercall_version_and_features(tmp_path):
    assert status(tmp_path, "mov eax, 0x52560000\nvmcall") == 1
    assert status(tmp_path, "mov eax, 0x52560000\nvmcall\nmov eax, ebx") == 1     # console; no MMU under ept


def test_a_vmx_instruction_is_ud_for_the_guest(tmp_path):
    # #UD with an IDT whose limit is 0: the guest's triple fault, reported.
    from ringvisor.errors import GuestCrashed
    with pytest.raises(GuestCrashed) as e:
        status(tmp_path, "vmxoff")
    assert "triple fault" in str(e.value)


def test_tsc_write_becomes_the_tsc_offset(tmp_path):
    code = ("mov ecx, 0x10\nxor eax, eax\nmov edx, 0x100\nwrmsr\n"      # TSC = 0x100_00000000
            "rdtsc\nmov eax, edx")
    assert status(tmp_path, code) == 0x00                                 # EDX 0x100: low byte 0
    assert status(tmp_path, code + "\nshr eax, 8") == 0x01
