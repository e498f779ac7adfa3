"""A hostile PV guest (guests/tests/pvhostile.c) under the PV monitor: every
forbidden request fails with the ABI's error code, is counted by reason, and
the monitor (and its memory) carry on untouched; guests that cannot go on
get a report and a non-zero exit, never a traceback."""
from __future__ import annotations

from functools import partial

import pytest

from ringvisor.errors import GuestCrashed
from ringvisor.monitors.common import region as R
import monitor_rig

machine = partial(monitor_rig.machine, technique="pv")


@pytest.fixture(scope="module")
def hostile(test_kernels):
    m = machine(test_kernels / "pvhostile.elf")
    monitor_page = bytes(m.memory.mmap[m.engine.region.phys:m.engine.region.phys + 0x5000])
    try:
        result = m.run()
    finally:
        m.close()
    lines = m.output.decode().splitlines()
    return result, lines, monitor_page, bytes(m.memory.mmap[m.engine.region.phys:
                                                            m.engine.region.phys + 0x5000])


def test_every_forbidden_request_is_refused_with_its_error(hostile, test_kernels):
    result, lines, _, _ = hostile
    checks = [l for l in lines if l.startswith("check ")]
    source = (test_kernels.parent / "pvhostile.c").read_text()
    assert len(checks) == source.count('check("') > 60          # every check ran
    assert [l for l in checks if not l.endswith(" ok")] == []
    assert lines[-1] == "hostile: all refused"
    assert result.status == 0 and result.reason == "shutdown hypercall"


def test_refusals_are_counted_by_reason(hostile):
    mon = hostile[0].stats["monitor"]
    rejected = mon["rejected"]
    assert rejected["unknown: -ENOSYS no such hypercall"] == 2
    assert rejected["set_trap_table: -EINVAL a trap-table handler CS other than 0x31 (ring 1)"] == 3
    assert rejected["set_trap_table: -EINVAL a trap table of more than 256 entries"] == 1
    assert rejected["mmu_update: -EPERM a frame that is not the guest's"] == 4
    assert rejected["mmu_update: -EPERM a writable mapping of a page table"] == 4
    assert rejected["pin_table: -EPERM pinning a table with a frame that is not the guest's"] == 1
    assert rejected["pin_table: -EPERM a directory with entries in the monitor's hole"] == 1
    assert rejected["update_va_mapping: -EPERM a frame that is not the guest's"] == 1
    assert rejected["console_write: -EFAULT a guest pointer into the monitor's hole"] == 1
    # Exactly the calls expected to fail were refused, not the legitimate ones.
    expected = [l for l in hostile[1] if l.startswith("check ") and " want=-" in l]
    assert sum(rejected.values()) == len(expected)


def test_the_monitor_region_is_untouched(hostile):
    _, _, before, after = hostile
    # The monitor's page table (mapped at 0xF0000000, which the guest wrote
    # through a DPL-3 data segment), the stubs, the IDT except the gates the
    # trap table opened, and the TSS: all as the monitor built them.
    assert after[R.PAGE_TABLE:R.PAGE_TABLE + 0x1000] == before[R.PAGE_TABLE:R.PAGE_TABLE + 0x1000]
    assert after[R.STUBS:R.IDT] == before[R.STUBS:R.IDT]
    assert after[R.TSS:R.STACK] == before[R.TSS:R.STACK]


def test_ring3_hypercall_is_a_gp_for_the_guest(hostile):
    lines = hostile[1]
    assert "check int82_from_ring3 got=1042 want=1042 ok" in lines       # #GP(0x82 << 3 | 2)
    assert hostile[0].stats["monitor"]["bounced"]["#GP"] >= 4


def crash(test_kernels, how: int) -> str:
    m = machine(test_kernels / "pvhostile.elf", f"how={how}")
    try:
        with pytest.raises(GuestCrashed) as e:
            m.run()
    finally:
        m.close()
    assert e.value.exit_code == 4
    return str(e.value)


def test_iret_to_ring0_is_a_guest_crash(test_kernels):
    report = crash(test_kernels, 1)
    assert report.startswith("HC_IRET to code segment 0x0008 (only 0x31 or 0x1b) (in hypercall iret)")
    assert "int 82h" in report and "CPL 1" in report


def test_an_undeliverable_exception_is_a_guest_crash(test_kernels):
    report = crash(test_kernels, 2)
    assert report.startswith("the guest crashed: #UD and no handler in its trap table for vector 0x06")
    assert "ud2" in report


def test_blocking_with_nothing_to_wake_the_guest_is_reported(test_kernels):
    report = crash(test_kernels, 3)
    assert report.startswith("the guest blocked (HC_BLOCK) with no timer armed")
    assert "events unmasked" in report
