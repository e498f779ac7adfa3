"""`ringvisor run --engine soft --technique native`: the bundled guest OS on
bare (soft) hardware — every workload, the red-pill verdict, determinism of
virtual time, and the error paths of misbehaving test kernels."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

NATIVE = ("--engine", "soft", "--technique", "native")


def ringvisor(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "ringvisor", "run", *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=timeout)


def lines(proc) -> list[str]:
    return proc.stdout.replace("\r", "").splitlines()


def test_compute_matches_the_reference_checksum_and_instruction_count(ringos, tmp_path):
    # The figures QEMU TCG prints for the same binary (guests/os/qemu-check.sh):
    # the guest counts its own instructions, so they are exact on every engine.
    stats = tmp_path / "stats.json"
    proc = ringvisor(*NATIVE, "--workload", "compute", "--cmdline", "iters=10", "--json", str(stats))
    assert proc.returncode == 0, proc.stderr
    assert "compute checksum=09ff79a6 instructions=1206750" in lines(proc)
    doc = json.loads(stats.read_text())
    assert doc["engine"] == "soft" and doc["instructions"] > 1206750
    assert doc["platform"]["timer_interrupts"] > 0


def test_the_soft_engine_alone_means_native(ringos):
    """`--engine soft` without `--technique` is bare soft hardware (it used
    to pick hw and fail: hw is the kvm engine's)."""
    proc = ringvisor("--engine", "soft", "--workload", "compute", "--cmdline", "iters=3 ring=0")
    assert proc.returncode == 0, proc.stderr
    assert "compute ring=0 rounds=3 sieve=4096 primes=564" in lines(proc)


def test_compute_in_ring_0_gives_the_same_checksum(ringos):
    proc = ringvisor(*NATIVE, "--workload", "compute", "--cmdline", "iters=3 ring=0")
    assert proc.returncode == 0, proc.stderr
    assert "compute ring=0 rounds=3 sieve=4096 primes=564" in lines(proc)
    assert re.search(r"^compute checksum=[0-9a-f]{8} instructions=362025$", proc.stdout, re.M)


def test_probe_on_bare_hardware_sees_no_virtualization(ringos):
    proc = ringvisor(*NATIVE, "--workload", "probe")
    assert proc.returncode == 0, proc.stderr
    probes = [l for l in lines(proc) if l.startswith("probe ")]
    assert len(probes) >= 17
    assert all(l.endswith(" ok") for l in probes), "\n".join(probes)
    assert lines(proc)[-2:] == ["virtualization visible: no", "ringos: exit status 0"]


def test_tasks_are_preempted_by_the_timer_and_the_bad_one_is_killed(ringos):
    proc = ringvisor(*NATIVE, "--workload", "tasks", "--cmdline", "iters=2")
    assert proc.returncode == 0, proc.stderr
    out = lines(proc)
    assert "tasks done: 4 tasks, 6 lines, 1 killed, preemptions>0 yes" in out
    assert any(re.match(r"ringos: task \d+ killed: #PF page fault .* cr2=00100000", l) for l in out)
    assert {l for l in out if l.startswith("[task")} >= {"[task 2] spin 2", "[task 3] spin 2"}


def test_virtual_time_makes_runs_repeat_exactly(ringos, tmp_path):
    runs = []
    for i in range(2):
        stats = tmp_path / f"s{i}.json"
        proc = ringvisor(*NATIVE, "--workload", "nanobench", "--cmdline", "iters=20", "--json", str(stats))
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(stats.read_text())
        runs.append((proc.stdout, doc["instructions"], doc["platform"]["interrupts_by_irq"]))
    assert runs[0] == runs[1]
    names = re.findall(r"^nanobench (\S+) iters=20 cycles_per_iter=\d+$", runs[0][0], re.M)
    assert names == ["in", "cr", "call/ret", "pgfault", "divzero", "ptemod", "syscall"]


@pytest.mark.parametrize("how, message", [
    (1, r"the guest shut down: triple fault"),
    (2, r"the guest halted with interrupts disabled \(cli; hlt\)"),
    (3, r"the guest did not finish within 2 s"),
    (4, r"the guest shut down: triple fault"),
])
def test_misbehaving_guests_get_a_report_and_a_nonzero_exit(test_kernels, how, message):
    proc = ringvisor(str(test_kernels / "crash.elf"), *NATIVE, "--cmdline", f"how={how}", "--timeout", "2")
    assert proc.returncode == 4, proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(message, proc.stderr.splitlines()[0]), proc.stderr
    assert re.search(r"^  at 0008:[0-9a-f]{8}: ", proc.stderr, re.M)


def test_ring_applies_to_trap_only():
    proc = ringvisor(*NATIVE, "--ring", "3")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "ringvisor: --ring applies to --technique trap only"


def test_a_runaway_command_line_is_cut_visibly(ringos):
    """A 100 KB --cmdline: ringos says it kept 255 bytes and shows a cut
    token, each warning on its own line (the echo used to lose its newline)."""
    proc = ringvisor(*NATIVE, "--workload", "compute", "--cmdline", "iters=1 " + "x" * 100_000)
    assert proc.returncode == 0, proc.stderr
    out = lines(proc)
    assert "ringos: warning: command line longer than 255 bytes: the rest is ignored" in out
    cut = [line for line in out if line.startswith("ringos: warning: ignoring unknown option")]
    assert cut == ["ringos: warning: ignoring unknown option '" + "x" * 63 + "...'"]
    assert "compute ring=3 rounds=1 sieve=4096 primes=564" in out
