"""The bundled guest OS, unmodified, under the binary-translation monitor:
the same output as on bare (soft) hardware, and the red pill no longer
visible, because the sensitive instructions never run: they are callouts."""
from __future__ import annotations

import pytest

from monitor_rig import run


def bt(ringos, cmdline):
    return run(ringos / "ringos.elf", cmdline, technique="bt")


@pytest.fixture(scope="module")
def native(ringos):
    def lines(cmdline, prefix):
        return [l for l in run(ringos / "ringos.elf", cmdline, technique="native")[1] if l.startswith(prefix)]
    return lines


def test_compute_prints_what_bare_hardware_prints(ringos, native):
    result, out = bt(ringos, "workload=compute iters=2")
    assert result.status == 0
    assert [l for l in out if l.startswith("compute ")] == native("workload=compute iters=2", "compute ")
    assert "compute checksum=33d3eddd instructions=241350" in out
    mon = result.stats["monitor"]
    tr = mon["translation"]
    assert mon["technique"] == "bt" and mon["traps"] == sum(mon["traps_by_kind"].values())
    assert tr["blocks_translated"] > 100 and 2 < tr["instructions_per_block"] < 48
    # Every port access of the kernel is an "io" callout (no direct I/O at ring 1).
    ports = sum(p["reads"] + p["writes"] for p in result.stats["ports"] if p["port"] != 0xF5)
    assert tr["callouts_by_kind"]["io"] == ports == mon["emulated"]["IN"] + mon["emulated"]["OUT"]
    # Kernel returns and indirect jumps stay in the cache: only the first
    # transfer to each guest target leaves it.
    assert tr["callouts_by_kind"]["lookup miss"] < 200 and mon["emulated"].get("RET", 0) < 10
    assert "indirect jmp" not in tr["callouts_by_kind"] and "indirect call" not in tr["callouts_by_kind"]
    assert tr["chain_patches"] == tr["callouts_by_kind"]["chain"]
    assert tr["cache_hits"] > 0 and tr["invalidations"] == 0 and tr["cache_flushes"] == 0
    assert mon["traps_by_kind"]["callout"] == tr["callouts"]


SENSITIVE_CALLOUTS = {"popf", "pushf", "sgdt", "sidt", "sldt", "str", "smsw", "mov from cs/ss",
                      "lar", "lsl", "verr", "verw"}


def test_probe_sees_no_virtualization(ringos):
    result, out = bt(ringos, "workload=probe")
    assert result.status == 0
    probes = {l.split()[1]: l for l in out if l.startswith("probe ")}
    assert len(probes) == 18
    assert [l for l in probes.values() if not l.endswith(" ok")] == []
    # The guest's own tables and selectors, not the monitor's (compare trap's red pill).
    _, _, value, expected, _ = probes["sgdt"].split()
    assert value.endswith("/0x002f") and value[len("value="):] == expected[len("expected="):]
    assert 0x00100000 <= int(value[len("value="):].split("/")[0], 16) < 0x00200000   # in the kernel image
    assert probes["str"].startswith("probe str value=0x0028 ")
    assert probes["mov_cs"].startswith("probe mov_cs value=0x0008 ")
    assert probes["lar_kcode"].startswith("probe lar_kcode value=0x00c09b00 ")
    assert probes["lsl_kdata"].startswith("probe lsl_kdata value=0xffffffff ")
    # CPUID runs as it is: no hypervisor bit (the monitor decides not to add one).
    assert probes["cpuid_hypervisor_bit"] == "probe cpuid_hypervisor_bit value=0x0000 expected=0x0000 ok"
    assert out[-2:] == ["virtualization visible: no", "ringos: exit status 0"]
    kinds = result.stats["monitor"]["translation"]["callouts_by_kind"]
    assert SENSITIVE_CALLOUTS <= set(kinds)


def test_tasks_give_the_native_lines(ringos, native):
    result, out = bt(ringos, "workload=tasks iters=2")
    assert result.status == 0
    done = native("workload=tasks iters=2", "tasks done")
    assert done == ["tasks done: 4 tasks, 6 lines, 1 killed, preemptions>0 yes"]
    assert [l for l in out if l.startswith("tasks done")] == done
    assert any("killed: #PF page fault" in l and "err=0x7 cr2=00100000" in l for l in out)
    tr = result.stats["monitor"]["translation"]
    # The killed task's store to kernel code is refused by the guest's own
    # tables: no translation is thrown away for it.
    assert tr["invalidations"] == 0
    mon = result.stats["monitor"]
    assert mon["reflected"]["0x20 interrupt"] > 0 and mon["reflected"]["0x80 software"] > 0


def test_nanobench_runs_every_benchmark(ringos):
    result, out = bt(ringos, "workload=nanobench iters=5")
    assert result.status == 0
    names = [l.split()[1] for l in out if l.startswith("nanobench ")]
    assert names == ["in", "cr", "call/ret", "pgfault", "divzero", "ptemod", "syscall"]
    mon = result.stats["monitor"]
    tr = mon["translation"]
    # Each kernel store into a page table traps once (a #PF) and is retranslated;
    # from then on it is a "pte store" callout, performed and mirrored in one trap.
    assert tr["adaptive_retranslations"] >= 1 and mon["shadow_paging"]["pte_write_traps"] == 0
    assert tr["callouts_by_kind"]["pte store"] >= 10 and tr["pte_store_steps"] == 0
    assert tr["pte_stores_one_trap"] == tr["adaptive_retranslations"] + tr["callouts_by_kind"]["pte store"]


def test_the_stub_path_and_the_fault_fast_path_agree(ringos):
    from monitor_rig import machine
    from ringvisor.monitors.common.realcpu import INTERCEPTED
    outputs, traps = [], []
    for intercept in (0, INTERCEPTED):
        m = machine(ringos / "ringos.elf", "workload=compute iters=1", technique="bt")
        m.engine.real.engine.intercept = intercept
        result = m.run()
        outputs.append([l for l in m.output.decode().splitlines() if "compute" in l])
        traps.append((result.stats["monitor"]["traps_by_kind"],
                      result.stats["monitor"]["translation"]["callouts_by_kind"]))
    assert outputs[0] == outputs[1] and any("checksum=" in l for l in outputs[0])
    assert traps[0] == traps[1]


def test_the_cache_tables_agree_after_a_run(ringos):
    from monitor_rig import machine
    m = machine(ringos / "ringos.elf", "workload=tasks iters=1", technique="bt")
    try:
        assert m.run().status == 0
        tc = m.engine.tc
    finally:
        m.close()
    # Every translated guest instruction maps back to itself, and is where it says.
    assert tc.at and all(tc.back[addr] == g for g, addr in tc.at.items())
    assert all(tc.owner[g].start <= addr < tc.owner[g].end for g, addr in tc.at.items())
    blocks = {b for b in tc.owner.values()}
    for b in blocks:
        assert b.alive and len(set(b.incoming)) == len(b.incoming)      # each jump chained once
        for source, field, stub in b.incoming:
            assert tc.points_at(field, tc.at[b.entry]) or any(
                tc.points_at(field, tc.at[g]) for g in b.guests)
    # Every frame code came from is write-protected in the shadow tables.
    assert set(tc.by_frame) <= m.engine.shadow.protected


def test_a_full_cache_is_flushed_and_the_guest_goes_on(ringos):
    from monitor_rig import machine
    m = machine(ringos / "ringos.elf", "workload=compute iters=1", technique="bt")
    m.engine.tc.size = 48 * 1024             # room for ringos's kernel a few times over, not more
    try:
        result = m.run()
    finally:
        m.close()
    assert result.status == 0
    assert "compute checksum=92da572c instructions=120675" in m.output.decode()   # as natively
    tr = result.stats["monitor"]["translation"]
    assert tr["cache_flushes"] >= 1 and tr["cache_bytes_used"] <= 48 * 1024
    assert tr["blocks_translated"] > tr["blocks_live"]
