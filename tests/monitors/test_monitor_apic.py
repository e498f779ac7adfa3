"""The trap (ring 1 and ring 3) and bt monitors on the pc machine: the
guest's xAPIC, I/O APIC and other device pages are never mapped in the
shadow page tables, so each access traps and is emulated (a plain MOV) or
single-stepped against the device (device_access.py); the APIC MSRs are
the vCPU's LAPIC's; interrupts from the LAPIC and ExtINT from the 8259
arrive under the virtual IF. Every test kernel that uses the APIC prints
the same lines under each monitor as natively."""
from __future__ import annotations

import pytest

from ringvisor.monitors.common.shadow_paging import DeviceAccess
from ringvisor.vm import VmConfig, build_machine

MONITORS = [("trap", 1), ("trap", 3), ("bt", 1)]
IDS = ["trap-ring1", "trap-ring3", "bt"]


def run(kernel, technique: str, ring: int = 1, cmdline: str = "", **config):
    out = bytearray()
    machine = build_machine(VmConfig(kernel=str(kernel), engine="soft", technique=technique, ring=ring,
                                     cmdline=cmdline, timeout=300, **config), out.extend)
    try:
        return machine.run(), out.decode().replace("\r", "")
    finally:
        machine.close()


@pytest.fixture(scope="module")
def native_outputs(test_kernels):
    return {name: run(test_kernels / f"{name}.elf", "native") for name in ("apic", "mmio")}


@pytest.mark.parametrize("technique, ring", MONITORS, ids=IDS)
@pytest.mark.parametrize("name", ["apic", "mmio"])
def test_apic_test_kernels_print_what_they_print_natively(test_kernels, native_outputs, name,
                                                          technique, ring):
    native, expected = native_outputs[name]
    assert native.status == 0 and "FAIL" not in expected, expected
    result, out = run(test_kernels / f"{name}.elf", technique, ring)
    assert out == expected
    assert result.status == 0
    devices = result.stats["monitor"]["device_mmio"]
    assert devices["emulated"] > 0
    assert devices["by_device"]["local APIC 0xfee00000"] > 0
    assert devices["by_device"]["I/O APIC"] > 0
    assert result.stats["monitor"]["traps_by_kind"]["#PF"] >= devices["emulated"] + devices["stepped"]


@pytest.mark.parametrize("technique, ring", MONITORS, ids=IDS)
def test_device_accesses_other_than_a_mov_are_single_stepped(test_kernels, technique, ring):
    """mmio.c's MOVZX, XCHG, OR, REP MOVSL and ADD (twice: paging off and
    on) run alone on the real CPU with the device page mapped for them;
    the relocated APIC's page is another device to the monitor."""
    result, out = run(test_kernels / "mmio.elf", technique, ring)
    assert result.status == 0, out
    devices = result.stats["monitor"]["device_mmio"]
    assert devices["stepped"] >= 2 * 5
    assert devices["by_device"]["local APIC 0xfef00000"] > 0


def test_the_guests_own_page_tables_still_decide(test_kernels):
    """A write through a read-only mapping of the APIC (CR0.WP=1) is the
    guest's #PF, not a device access; the register keeps its value."""
    result, out = run(test_kernels / "mmio.elf", "trap", 3)
    assert "ok a write through the read-only alias is the guest's #PF (present, write)" in out
    assert "ok and did not reach the TPR" in out
    assert result.stats["monitor"]["reflected"]["#PF"] == 1


def test_polling_a_device_register_is_not_a_stuck_fault(test_kernels):
    """Regression: the same #PF at the same EIP more than SAME_FAULT_LIMIT
    times in a row was taken for a monitor bug; a loop that polls the APIC
    timer's current count faults there each time and makes progress."""
    result, out = run(test_kernels / "mmio.elf", "trap", 1)
    assert "ok the timer's current count polled down to 0" in out


@pytest.mark.parametrize("technique, ring", MONITORS, ids=IDS)
@pytest.mark.parametrize("workload", ["compute", "tasks"])
def test_ringos_workloads_on_pc_match_native(ringos, workload, technique, ring):
    """ringos on one CPU keeps the 8259/PIT path, which on pc reaches the
    CPU through LINT0 as ExtINT: same lines as native but the free RAM
    (the monitor keeps 4 MiB)."""
    kernel = ringos / "ringos.elf"
    strip = lambda out: [line for line in out.splitlines() if "free RAM" not in line]   # noqa: E731
    native = run(kernel, "native", cmdline=f"workload={workload}")
    monitored = run(kernel, technique, ring, cmdline=f"workload={workload}")
    assert native[0].status == monitored[0].status == 0
    assert strip(monitored[1]) == strip(native[1])
    assert monitored[0].stats["platform"]["interrupts_by_irq"][0] > 0        # the PIT, as ExtINT
    assert monitored[0].stats["monitor"]["traps_by_kind"]["interrupt"] > 0


@pytest.mark.parametrize("technique, machine", [("trap", "pc"), ("bt", "pc"), ("native", "pc"),
                                                ("pv", "isa"), ("hw", "pc")])
def test_the_default_machine_per_technique(technique, machine):
    assert VmConfig(kernel="k", engine="soft", technique=technique).machine_kind == machine


def test_the_shadow_never_maps_a_device_page(test_kernels):
    """Guest paging off: the identity shadow maps RAM, not 0xFEE00000; a fill
    there is a DeviceAccess for the monitor to emulate."""
    machine = build_machine(VmConfig(kernel=str(test_kernels / "hello.elf"), engine="soft",
                                     technique="trap", timeout=30), lambda b: None)
    try:
        monitor = machine.engine
        shadow = monitor.shadow
        assert shadow.trap_mmio and not shadow.vcpu.paging
        shadow.activate()
        with pytest.raises(DeviceAccess) as access:
            shadow.fill(0xFEE00030, False, False)
        assert (access.value.lin, access.value.phys, access.value.write) == (0xFEE00030, 0xFEE00030, False)
        pte = shadow.lookup(0xFEE00030)
        assert pte is None or shadow.region.read_u32(pte) == 0
        assert shadow.fill(0x200000, False, False) is None          # RAM: filled
        assert shadow.region.read_u32(shadow.lookup(0x200000)) & 1
    finally:
        machine.close()
