"""Hostile and broken guests under the hw monitor on the soft CPU's VMX end
with a clear report and exit 4: a triple fault (garbage IDT or GDT) is a VM
exit the monitor reports as the guest's crash, an access outside guest RAM
an EPT violation, cli;hlt a halt nothing can wake (guests/tests/crash.c and
hostile.c)."""
from __future__ import annotations

import pytest

from monitor_rig import run
from ringvisor.errors import GuestCrashed


def crash_report(kernel, cmdline, paging="ept") -> str:
    with pytest.raises(GuestCrashed) as e:
        run(kernel, cmdline, technique="hw", paging=paging)
    assert e.value.exit_code == 4
    return str(e.value)


@pytest.mark.parametrize("paging", ["ept", "shadow"])
def test_cli_hlt(test_kernels, paging):
    report = crash_report(test_kernels / "crash.elf", "how=2", paging)
    assert report.startswith("the guest halted with interrupts disabled (cli; hlt)")


@pytest.mark.parametrize("paging", ["ept", "shadow"])
@pytest.mark.parametrize("kernel,how", [("crash", 1), ("hostile", 1), ("hostile", 2)])
def test_triple_faults_are_the_guests_shutdown(test_kernels, kernel, how, paging):
    report = crash_report(test_kernels / f"{kernel}.elf", f"how={how}", paging)
    assert report.startswith("the guest shut down: triple fault")


def test_reading_past_guest_ram_is_an_ept_violation(test_kernels):
    report = crash_report(test_kernels / "hostile.elf", "how=4")
    assert report.startswith("EPT violation: read of guest-physical 0x03c00000")
    assert "outside the guest's 60 MiB of RAM" in report


def test_writing_beyond_ram_is_an_ept_violation_with_the_instruction(test_kernels):
    # Natively the write goes to the (empty) MMIO bus; under hw nothing backs
    # that guest-physical address, and the EPT says so.
    report = crash_report(test_kernels / "hostile.elf", "how=5")
    assert report.startswith("EPT violation: write of guest-physical 0xffc00000")
    assert "mov [0FFC00000h],eax" in report


def test_shadow_paging_keeps_the_monitors_memory_out_of_reach(test_kernels):
    report = crash_report(test_kernels / "hostile.elf", "how=4", "shadow")
    assert "memory the memory map reserves for the monitor" in report
