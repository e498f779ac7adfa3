"""Hostile and broken guests under the hw monitor on the soft CPU's VMX end
with a clear report and exit 4: a triple fault (garbage IDT or GDT) is a VM
exit the monitor reports as the guest's crash, an access outside guest RAM
an EPT violation, cli;hlt a halt nothing can wake (guests/tests/crash.c and
hostile.c)."""
from __future__ import annotations

import pytest

from monitor_rig import machine, run
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
    # The default 128 MiB of RAM less the monitor's 4 MiB at the top.
    report = crash_report(test_kernels / "hostile.elf", "how=4")
    assert report.startswith("EPT violation: read of guest-physical 0x07c00000")
    assert "outside the guest's 124 MiB of RAM" in report


@pytest.mark.parametrize("paging", ["ept", "shadow"])
def test_writing_beyond_ram_reaches_the_mmio_bus_as_natively(test_kernels, paging):
    # Natively the write goes to the (empty) MMIO bus. Under EPT nothing maps
    # that guest-physical address: an EPT violation the monitor emulates
    # (monitors/hw/mmio.py), so the machine's bus sees the same write.
    m = machine(test_kernels / "hostile.elf", "how=5", technique="hw", paging=paging)
    try:
        result = m.run()
        stats = m.engine.statistics()
    finally:
        m.close()
    assert result.status == 0 and "written" in m.output.decode()
    assert m.mmio.unknown[("mmio", "write", 0xFFC00000)] == 1
    if paging == "ept":
        assert stats["exits_by_reason"]["ept_violation"] == 1
        assert stats["mmio_exits_by_page"] == {"0xffc00000": 1}


def test_shadow_paging_keeps_the_monitors_memory_out_of_reach(test_kernels):
    report = crash_report(test_kernels / "hostile.elf", "how=4", "shadow")
    assert "memory the memory map reserves for the monitor" in report
