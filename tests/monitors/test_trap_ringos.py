"""The bundled guest OS, unmodified, under the trap-and-emulate monitor in
both deprivileging models: the same results as on bare (soft) hardware,
the red pill honestly visible, and the traps it took."""
from __future__ import annotations

import pytest

from monitor_rig import run

RINGS = [1, 3]


@pytest.fixture(scope="module")
def native_compute(ringos):
    return [l for l in run(ringos / "ringos.elf", "workload=compute iters=2", technique="native")[1]
            if l.startswith("compute ")]


@pytest.mark.parametrize("ring", RINGS)
def test_compute_prints_what_bare_hardware_prints(ringos, native_compute, ring):
    result, out = run(ringos / "ringos.elf", "workload=compute iters=2", ring=ring)
    assert result.status == 0
    assert [l for l in out if l.startswith("compute ")] == native_compute
    assert "compute checksum=33d3eddd instructions=241350" in out
    mon = result.stats["monitor"]
    assert mon["technique"] == "trap" and mon["ring"] == ring
    # Every port access of the kernel traps (IOPL 0) and is emulated.
    ports = sum(p["reads"] + p["writes"] for p in result.stats["ports"] if p["port"] != 0xF5)
    assert mon["emulated"].get("IN", 0) + mon["emulated"].get("OUT", 0) == ports
    assert mon["traps"] == sum(mon["traps_by_kind"].values())


VISIBLE_RING1 = {"popf", "sgdt", "sidt", "str", "mov_cs", "mov_ss", "lar_kcode", "lsl_kcode",
                 "lar_kdata", "lsl_kdata"}


@pytest.mark.parametrize("ring", RINGS)
def test_probe_shows_the_holes(ringos, ring):
    result, out = run(ringos / "ringos.elf", "workload=probe", ring=ring)
    assert result.status == 0
    probes = {l.split()[1]: l for l in out if l.startswith("probe ")}
    visible = {name for name, l in probes.items() if l.endswith(" VISIBLE")}
    assert visible == VISIBLE_RING1
    assert f"value=0x000{ring + 8:x} expected=0x0008" in probes["mov_cs"]      # CS.RPL = real ring
    assert probes["str"].startswith("probe str value=0xfff8 ")                # the monitor's TSS
    assert probes["sgdt"].split()[2].startswith("value=0xffc1")               # the monitor's GDT
    dpl = {1: "b", 3: "f"}[ring]                                              # access byte of CS
    assert f"value=0x00c0{dpl}b00 expected=0x00c09b00" in probes["lar_kcode"]
    assert out[-2:] == ["virtualization visible: yes", "ringos: exit status 0"]


@pytest.mark.parametrize("ring", RINGS)
def test_tasks_are_preempted_and_isolated(ringos, ring):
    result, out = run(ringos / "ringos.elf", "workload=tasks iters=2", ring=ring)
    assert result.status == 0
    assert "tasks done: 4 tasks, 6 lines, 1 killed, preemptions>0 yes" in out
    # The task writing to kernel memory gets the guest's own #PF error code:
    # present, write, user (7), whichever ring the kernel really runs in.
    assert any("killed: #PF page fault" in l and "err=0x7 cr2=00100000" in l for l in out)
    mon = result.stats["monitor"]
    assert mon["reflected"]["0x20 interrupt"] > 0           # timer ticks reached the guest
    assert mon["reflected"]["0x80 software"] > 0            # system calls: INT 0x80 via the guest IDT
    assert mon["shadow_paging"]["pte_write_traps"] > 0      # traced page tables
    assert mon["shadow_paging"]["cr3_writes"] > 0


def test_nanobench_runs_every_benchmark(ringos):
    result, out = run(ringos / "ringos.elf", "workload=nanobench iters=5")
    assert result.status == 0
    names = [l.split()[1] for l in out if l.startswith("nanobench ")]
    assert names == ["in", "cr", "call/ret", "pgfault", "divzero", "ptemod", "syscall"]
    sp = result.stats["monitor"]["shadow_paging"]
    # ptemod: each PTE store traps (read-only shadow of a traced page table) and is mirrored.
    assert sp["pte_write_traps"] >= 5 and sp["pte_writes_mirrored"] >= 5


def test_the_stub_path_and_the_fault_fast_path_agree(ringos):
    from monitor_rig import machine
    outputs, traps = [], []
    for fast in (False, True):
        m = machine(ringos / "ringos.elf", "workload=compute iters=1")
        m.engine.real.engine.intercept = 0
        if fast:
            from ringvisor.monitors.common.realcpu import INTERCEPTED
            m.engine.real.engine.intercept = INTERCEPTED
        result = m.run()
        outputs.append([l for l in m.output.decode().splitlines() if "compute" in l])
        traps.append(result.stats["monitor"]["traps_by_kind"])
    assert outputs[0] == outputs[1]
    assert traps[0] == traps[1]
