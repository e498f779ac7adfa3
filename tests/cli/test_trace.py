"""`ringvisor run --trace`: one line per exit or monitor trap, with the guest
instruction and what the monitor did, consistent with --json's counters."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


def ringvisor(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "ringvisor", "run", *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=timeout)


def events(path) -> list[str]:
    lines = path.read_text().splitlines()
    assert lines[0].split()[:4] == ["instruction", "event", "where", "guest"]
    return lines[1:]


@pytest.mark.kvm
def test_kvm_exits_are_traced_with_their_port_and_value(test_kernels, tmp_path):
    trace = tmp_path / "trace.txt"
    proc = ringvisor("--engine", "kvm", str(test_kernels / "sysenter.elf"), "--cmdline", "calls=2",
                     "--trace", str(trace))
    assert proc.returncode == 0, proc.stderr
    outs = [l for l in events(trace) if "exit io out" in l and "port 0x03f8" in l]
    # One exit per character the guest wrote to COM1: the trace spells its console.
    written = "".join(chr(int(l.rsplit("value ", 1)[1], 16)) for l in outs)
    assert written.replace("\r", "") == proc.stdout.replace("\r", "")
    assert written.startswith("sysenter calls=2 sum=3 ")


def test_trap_monitor_lines_match_its_counters(ringos, tmp_path):
    trace, stats = tmp_path / "trace.txt", tmp_path / "stats.json"
    proc = ringvisor("--technique", "trap", "--workload", "probe", "--trace", str(trace),
                     "--json", str(stats))
    assert proc.returncode == 0, proc.stderr
    lines = events(trace)
    monitor = json.loads(stats.read_text())["monitor"]
    traps = [l for l in lines if not l.split()[1].startswith("exit")]
    assert len(traps) == monitor["traps"]
    emulated_cli = [l for l in traps if l.endswith("emulated CLI")]
    assert len(emulated_cli) == monitor["emulated"]["CLI"]
    assert all(" cli " in l and "ring 1  0008:" in l for l in emulated_cli)   # guest CS, real ring 1
    assert any("#PF" in l and "hidden fault: shadow PTE filled" in l for l in traps)
    assert any(l.split()[1] == "interrupt" and "reflected" in l for l in traps)


def test_pv_hypercalls_show_the_int_0x82_and_the_call(ringos, tmp_path):
    trace = tmp_path / "trace.txt"
    proc = ringvisor("--technique", "pv", "--workload", "probe", "--trace", str(trace))
    assert proc.returncode == 0, proc.stderr
    calls = [l for l in events(trace) if "hypercall set_trap_table" in l]
    assert len(calls) == 1 and "int 82h" in calls[0] and "ring 1" in calls[0]


def test_the_trace_stops_at_its_limit(ringos, tmp_path):
    trace = tmp_path / "trace.txt"
    proc = ringvisor("--technique", "trap", "--workload", "probe", "--trace", str(trace),
                     "--trace-limit", "5")
    assert proc.returncode == 0, proc.stderr
    lines = events(trace)
    assert len(lines) == 6 and lines[-1] == "(trace stopped after 5 lines)"


@pytest.mark.parametrize("args,message", [
    (("--trace", "/nonexistent/dir/trace.txt"),
     "cannot write the trace to /nonexistent/dir/trace.txt: No such file or directory"),
    (("--trace", "-", "--trace-limit", "0"), "--trace-limit must be a positive number of lines"),
])
def test_bad_trace_options_fail_in_one_line(ringos, args, message):
    proc = ringvisor("--technique", "trap", "--workload", "probe", *args)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"ringvisor: {message}"]
