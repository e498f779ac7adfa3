"""ringos on several CPUs (guests/os: kernel/smp.c, arch/native/apic.c): the
APs come up through the MADT and INIT-SIPI-SIPI, every CPU runs tasks off
its local APIC timer, reschedule IPIs wake idle CPUs, and an unmap of the
shared page is shot down on the other CPUs. The shootdown check carries its
own control: with shootdown=0 the reader on the other CPU still reads the
unmapped page through its stale TLB entry, so the ok of the normal run is
the IPI's doing. Runs repeat to the instruction; with one CPU the kernel
keeps its 8259/8254 path and prints what it printed before."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from ringvisor.vm import VmConfig, build_machine


def run(ringos, cmdline, cpus=1, **config):
    out = bytearray()
    machine = build_machine(VmConfig(kernel=str(ringos / "ringos.elf"), engine="soft", cmdline=cmdline,
                                     cpus=cpus, timeout=120, **{"technique": "native", **config}),
                            out.extend)
    try:
        return machine.run(), out.decode().replace("\r", "")
    finally:
        machine.close()


@pytest.mark.parametrize("cpus", [2, 4])
def test_tasks_run_on_every_cpu_and_the_shootdown_works(ringos, cpus):
    result, out = run(ringos, "workload=tasks iters=2", cpus)
    assert result.status == 0, out
    assert f"ringos: smp: {cpus} CPUs in the MADT; local APIC timer 100 Hz" in out
    assert f"ringos: smp: {cpus} CPUs online, APIC IDs {' '.join(map(str, range(cpus)))}\n" in out
    ran_on = set(re.findall(r"^\[task \d+\] (?:spin|sleep) .* on cpu(\d+)$", out, re.M))
    assert len(ran_on) > 1
    every = " ".join(f"cpu{i}" for i in range(cpus))
    assert f"[init] CPUs that ran tasks: {every} (every CPU: yes)" in out
    assert "tasks done: 4 tasks, 6 lines, 1 killed" in out
    # The reader is on another CPU; it faults on its next read of the page.
    m = re.search(r"unmapping the shared page on cpu(\d+) while task (\d+) reads it on cpu(\d+)", out)
    assert m and m[1] != m[3]
    assert re.search(rf"task {m[2]} killed: #PF .* cr2=60000008 \(read from an unmapped page\)", out)
    assert f"[init] {cpus - 1} CPU(s) acknowledged the TLB shootdown" in out
    assert "tlb shootdown: ok" in out
    assert f"ringos: smp: " in out and f"{cpus - 1} TLB shootdown IPIs sent" in out
    stats = result.stats["cpus"]
    assert [c["cpu"] for c in stats] == list(range(cpus))
    assert all(c["ipis_received"] > 0 and c["instructions"] > 0 for c in stats)
    assert stats[0]["ipis_sent"] > 3 * (cpus - 1)          # INIT, 2 SIPIs each, and more
    assert all(c["startups"] == 1 for c in stats[1:])


def test_the_mp_table_when_acpi_is_off(ringos):
    """acpi=off: the CPUs come from the MP spec's configuration table."""
    result, out = run(ringos, "workload=tasks iters=1 acpi=off", 3)
    assert result.status == 0, out
    assert "ringos: smp: 3 CPUs in the MP table;" in out
    assert "[init] CPUs that ran tasks: cpu0 cpu1 cpu2 (every CPU: yes)" in out
    assert "tlb shootdown: ok" in out


def test_without_the_shootdown_the_other_cpu_reads_stale_data(ringos):
    """The control: the same run with the IPI left out. The reader's TLB
    still maps the page, so it reads the frame's poison after the unmap."""
    result, out = run(ringos, "workload=tasks iters=1 shootdown=0", 2)
    assert result.status == 1, out
    assert "[init] 0 CPU(s) acknowledged the TLB shootdown" in out
    assert "tlb shootdown: STALE (the reader still read the unmapped page: status 2)" in out
    assert "cr2=60000008" not in out


def test_smp_runs_repeat_to_the_instruction(ringos):
    first, out1 = run(ringos, "workload=tasks iters=1", 2)
    again, out2 = run(ringos, "workload=tasks iters=1", 2)
    assert out1 == out2
    assert [c["instructions"] for c in first.stats["cpus"]] == [c["instructions"] for c in again.stats["cpus"]]
    assert [c["ipis_sent"] for c in first.stats["cpus"]] == [c["ipis_sent"] for c in again.stats["cpus"]]


@pytest.mark.parametrize("workload", ["tasks iters=2", "probe", "compute iters=2"])
def test_one_cpu_on_the_pc_machine_prints_what_the_isa_machine_does(ringos, workload):
    """One CPU: no SMP lines, the 8259/8254 path, the same output as on the
    1990 PC (whose CPUID has no APIC), line for line but the free RAM."""
    pc = run(ringos, f"workload={workload}", 1)[1]
    isa = run(ringos, f"workload={workload}", 1, machine="isa")[1]
    assert "smp" not in pc and "cpu" not in pc.replace("cpuid", "")
    strip = lambda out: [l for l in out.splitlines() if "free RAM" not in l]   # noqa: E731
    assert strip(pc) == strip(isa)


def test_stats_lines_for_the_tasks_run():
    proc = subprocess.run([sys.executable, "-m", "ringvisor", "run", "--engine", "soft", "--technique", "native",
                           "--cpus", "2", "--workload", "tasks", "--cmdline", "iters=1", "--stats"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=180)
    assert proc.returncode == 0, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if re.match(r"cpu\d+ instructions=\d+ ", l)]
    assert [l.split()[0] for l in lines] == ["cpu0", "cpu1"]
    assert all(int(re.search(r"ipis_sent=(\d+)", l)[1]) > 0 for l in lines)
    assert "on cpu1" in proc.stdout and "on cpu0" in proc.stdout
