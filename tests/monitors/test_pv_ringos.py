"""The bundled guest OS built for the PV ABI (ringos-pv) under the PV
monitor: the same results as the native build on bare (soft) hardware, its
hypercalls counted, none rejected, and the red pill honestly visible."""
from __future__ import annotations

from functools import partial

import pytest

from ringvisor.errors import GuestImageError
import monitor_rig

run = partial(monitor_rig.run, technique="pv")


def monitor(result) -> dict:
    mon = result.stats["monitor"]
    assert mon["technique"] == "pv"
    assert mon["rejected"] == {}                    # ringos never asks for anything illegal
    assert mon["hypercalls"] == sum(mon["hypercalls_by_name"].values())
    return mon


def test_compute_prints_what_the_native_build_prints(ringos):
    native = [l for l in run(ringos / "ringos.elf", "workload=compute iters=2", technique="native")[1]
              if l.startswith("compute ")]
    result, out = run(ringos / "ringos-pv.elf", "workload=compute iters=2")
    assert result.status == 0 and result.reason == "shutdown hypercall"
    assert out[0] == "ringos 0.1 (paravirtual build) workload=compute"
    assert [l for l in out if l.startswith("compute ")] == native
    assert "compute checksum=33d3eddd instructions=241350" in out
    mon = monitor(result)
    assert mon["hypercalls_by_name"]["shutdown"] == 1
    # The ring-3 compute task's system calls are bounced to the guest's handler.
    assert mon["bounced"]["int 0x80"] >= 1


def test_tasks_are_preempted_by_timer_events_and_isolated(ringos):
    result, out = run(ringos / "ringos-pv.elf", "workload=tasks iters=2")
    assert result.status == 0
    assert "tasks done: 4 tasks, 6 lines, 1 killed, preemptions>0 yes" in out
    # The task writing to kernel memory: the guest's #PF with the real error
    # code (present, write, user) and the address from shared_info.cr2.
    assert any("killed: #PF page fault" in l and "err=0x7 cr2=00100000" in l for l in out)
    mon = monitor(result)
    assert mon["events_delivered"]["timer"] == mon["timer"]["fired"] > 0
    assert mon["blocks"] > 0 and result.stats["platform"]["halts_skipped"] > 0
    assert result.stats["platform"]["interrupts_by_irq"] == {0: mon["timer"]["irqs"]}
    # Every address space the kernel created was pinned, and all but the
    # boot tables and the kernel's shared ones released again.
    paging = mon["paging"]
    assert paging["pinned_l2"] - paging["unpinned_l2"] == 1


def test_nanobench_measures_hypercalls(ringos):
    result, out = run(ringos / "ringos-pv.elf", "workload=nanobench iters=20")
    assert result.status == 0
    names = [l.split()[1] for l in out if l.startswith("nanobench ")]
    assert names == ["in-hypercall", "cr-hypercall", "call/ret", "pgfault", "divzero",
                     "ptemod-hypercall", "syscall"]
    calls = monitor(result)["hypercalls_by_name"]
    assert calls["version"] >= 20 and calls["new_baseptr"] >= 20
    assert calls["update_va_mapping"] >= 2 * 20               # pgfault and ptemod
    assert monitor(result)["bounced"]["#DE"] == 20


def test_probe_sees_a_paravirtualized_kernel(ringos):
    result, out = run(ringos / "ringos-pv.elf", "workload=probe")
    assert result.status == 0
    probes = {l.split()[1]: l for l in out if l.startswith("probe ")}
    visible = {name for name, l in probes.items() if l.endswith(" VISIBLE")}
    # Ring 1 shows in CS/SS, the real IF (always 1) in PUSHF/POPF, the
    # monitor's tables in the hole; the ABI's descriptors are what it expects.
    assert visible == {"popf", "pushf", "sgdt", "sidt", "mov_cs", "mov_ss"}
    assert probes["str"] == "probe str value=0x0028 expected=0x0028 ok"
    assert probes["lsl_kcode"] == "probe lsl_kcode value=0xefffffff expected=0xefffffff ok"
    assert probes["sgdt"].split()[2] == "value=0xf0010000/0x003f"
    assert out[-2:] == ["virtualization visible: yes", "ringos: exit status 0"]


def test_a_kernel_without_the_pv_note_is_refused(ringos):
    with pytest.raises(GuestImageError, match="no ringvisor PV note"):
        run(ringos / "ringos.elf", "workload=compute")


def test_compare_attributes_exactly_one_trap_per_hypercall_benchmark(ringos):
    """`ringvisor compare` logs every RDTSC with the trap count: the monitor's
    own time updates must not read the TSC through the logged path
    (regression: they did, and the log no longer paired the guest's reads)."""
    from ringvisor.compare.measure import nanobench
    from ringvisor.compare.techniques import Technique
    rows = nanobench(Technique("pv", "soft", "pv"), iters=5)
    assert {name: r["traps_per_iter"] for name, r in rows.items()} == {
        "in": 1, "cr": 1, "call/ret": 0, "pgfault": 4, "divzero": 2, "ptemod": 1, "syscall": 2}


def test_the_command_line_refuses_a_native_kernel_in_one_line(ringos):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "ringvisor", "run", str(ringos / "ringos.elf"),
                        "--engine", "soft", "--technique", "pv"], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("ringvisor: ringos.elf: no ringvisor PV note")
