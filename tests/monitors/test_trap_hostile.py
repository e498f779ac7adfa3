"""Guests that break under (or attack) a trap-and-emulate monitor get a
clear report of the virtual CPU and a non-zero exit, never a hang or a
traceback: guests/tests/crash.c and guests/tests/hostile.c."""
from __future__ import annotations

import pytest

from ringvisor.errors import GuestCrashed
from monitor_rig import machine, run


def crash_report(kernel, cmdline, **kw) -> str:
    with pytest.raises(GuestCrashed) as e:
        run(kernel, cmdline, **kw)
    assert e.value.exit_code == 4
    return str(e.value)


@pytest.mark.parametrize("ring", [1, 3])
def test_cli_hlt_is_reported_with_the_virtual_state(test_kernels, ring):
    report = crash_report(test_kernels / "crash.elf", "how=2", ring=ring)
    assert report.startswith("the guest halted with interrupts disabled (cli; hlt)")
    assert f"virtual CPU: CPL 0 (real ring {ring}), IF=0" in report
    assert "protected mode, CPL 0, 32-bit code" in report          # the guest's view, not ring 1/3


def test_a_triple_fault_is_a_virtual_shutdown(test_kernels):
    report = crash_report(test_kernels / "crash.elf", "how=1")
    # ud2 with an empty IDT: #UD, then #GP for the missing gate (error code:
    # vector 6 in the IDT, EXT set), #DF, and no gate for that either.
    assert "the guest shut down: virtual triple fault (#UD -> #GP(0x33) -> #GP(0x6b) -> #GP(0x43))" in report
    assert "idt=00000000/0000" in report


def test_a_garbage_idt_ends_in_a_virtual_triple_fault(test_kernels):
    report = crash_report(test_kernels / "hostile.elf", "how=1")
    assert "virtual triple fault (vector 0x30 -> #GP(0x182) -> #GP(0x6b) -> #GP(0x43))" in report
    assert "at 0008:" in report and "int 30h" in report


def test_a_garbage_gdt_ends_in_a_virtual_triple_fault(test_kernels):
    report = crash_report(test_kernels / "hostile.elf", "how=2")
    assert "virtual triple fault (#GP -> #GP(0x9) -> #GP(0x43))" in report
    assert "/003f" in report and "jmp 8:" in report


def test_the_popf_hole_is_detected_not_a_hang(test_kernels):
    native, out = run(test_kernels / "hostile.elf", "how=3", technique="native")
    assert native.status == 0 and "3 timer ticks arrived" in out
    m = machine(test_kernels / "hostile.elf", "how=3")
    m.engine.masked_limit = 300_000
    with pytest.raises(GuestCrashed) as e:
        m.run()
    report = str(e.value)
    assert "kept interrupts disabled" in report and "POPF cannot set IF" in report
    assert "virtual IF=0 since CLI at 0x" in report


@pytest.mark.parametrize("ring", [1, 3])
def test_the_monitors_memory_is_out_of_reach(test_kernels, ring):
    report = crash_report(test_kernels / "hostile.elf", "how=4", ring=ring)
    assert "memory the memory map reserves for the monitor" in report
    # The region's linear addresses (0xFFC00000 up): beyond every guest
    # segment's limit (a #GP the guest's own handler reports).
    result, out = run(test_kernels / "hostile.elf", "how=5", ring=ring)
    assert result.status == 13 and "#GP at the monitor's hole" in out


@pytest.mark.parametrize("technique,ring", [("trap", 1), ("trap", 3), ("bt", 1)])
def test_mmio_near_the_top_of_the_address_space_reaches_the_bus(test_kernels, technique, ring):
    # The xAPIC page (0xFEE00000) lies below the monitors' region at
    # 0xFFC00000: the guest's read goes to the machine's MMIO bus exactly
    # as natively (an unassigned access there until a PC platform answers),
    # not to a #GP at a segment limit cut (issue 16).
    result, out = run(test_kernels / "hostile.elf", "how=6", technique=technique, ring=ring)
    assert result.status == 0 and out[-1].startswith("reading 0xfee00030: 0x")
    assert not any("#GP" in line for line in out)
