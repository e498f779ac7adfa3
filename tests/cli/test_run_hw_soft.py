"""`ringvisor run --engine soft --technique hw [--paging ept|shadow]` from
the command line: the probe, exits by reason in --json and --stats, one
line per exit in --trace, and the option errors."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

HW = ("--engine", "soft", "--technique", "hw")


def ringvisor(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "ringvisor", "run", *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=timeout)


@pytest.mark.parametrize("paging", ["ept", "shadow"])
def test_probe_json_stats_and_trace(ringos, tmp_path, paging):
    stats, trace = tmp_path / "s.json", tmp_path / "t.txt"
    proc = ringvisor(*HW, "--paging", paging, "--workload", "probe", "--stats", "--json", str(stats),
                     "--trace", str(trace))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.replace("\r", "")
    assert "virtualization visible: yes" in out and "cpuid_hypervisor_bit" in out
    assert "exits_by_reason.io_instruction" in proc.stderr         # the --stats table
    doc = json.loads(stats.read_text())
    mon = doc["monitor"]
    assert doc["engine"] == "hw" and mon["technique"] == "hw" and doc["instructions"] > 0 and mon["paging"] == paging
    assert mon["exits_by_reason"]["cpuid"] >= 2
    assert ("ept" in mon) == (paging == "ept") and ("shadow_paging" in mon) == (paging == "shadow")
    text = trace.read_text()
    assert "vmexit cpuid" in text and "vmexit io_instruction" in text


def test_paging_option_errors_are_one_line():
    proc = ringvisor("--technique", "native", "--engine", "soft", "--paging", "ept")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--paging applies to --technique hw on the soft engine only" in proc.stderr
    proc = ringvisor(*HW, "--paging", "nested")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_hw_without_an_engine_says_to_use_the_soft_one_where_kvm_cannot(monkeypatch):
    import os
    from ringvisor.cli.options import engine_for
    from ringvisor.errors import KvmUnavailable
    monkeypatch.setattr(os, "access", lambda path, mode: False)       # no usable /dev/kvm
    with pytest.raises(KvmUnavailable) as e:
        engine_for("hw", None)
    assert "add --engine soft" in str(e.value) and "\n" not in str(e.value)
    assert engine_for("hw", "soft") == "soft"
