"""`ringvisor compare`: the JSON document's contract (issue 5), the table,
the chart, and its errors."""
from __future__ import annotations

import json
import subprocess
import sys

BENCHES = {"syscall", "in", "cr", "call/ret", "pgfault", "divzero", "ptemod"}


def compare(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "ringvisor", "compare", *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=timeout)


def test_native_row_follows_the_json_contract_and_draws_a_chart(ringos, tmp_path):
    doc_path, chart = tmp_path / "c.json", tmp_path / "c.svg"
    proc = compare("--only", "native", "--iters", "20", "--rounds", "1", "--json", str(doc_path),
                   "--chart", str(chart))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(doc_path.read_text())
    assert isinstance(doc["backend"], str)
    native = doc["techniques"]["native"]
    assert native["probe_visible"] is False and (native["mips"] is None or native["mips"] > 0)
    assert set(native["nanobench"]) == BENCHES
    for b in native["nanobench"].values():
        assert b["ns_per_iter"] > 0 and b["traps_per_iter"] == 0 and b["ratio_to_native"] == 1
    assert "compute MIPS" in proc.stdout and "syscall" in proc.stdout
    assert chart.read_text().lstrip().startswith("<?xml")


def test_unknown_technique_and_chart_format_are_one_line_errors():
    for args, message in ((("--only", "native,nope"), "unknown technique 'nope'"),
                          (("--chart", "x.gif"), "must end in .png or .svg"),
                          (("--iters", "1"), "--iters must be at least 10")):
        proc = compare(*args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert message in proc.stderr.strip().splitlines()[0]


def test_hw_columns_on_the_soft_engine_count_exits_per_iteration(ringos, tmp_path):
    doc_path = tmp_path / "c.json"
    proc = compare("--only", "hw-shadow,hw-ept", "--iters", "20", "--rounds", "1", "--json",
                   str(doc_path), timeout=600)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(doc_path.read_text())
    shadow, ept = doc["techniques"]["hw-shadow"], doc["techniques"]["hw-ept"]
    for t in (shadow, ept):
        assert set(t["nanobench"]) == BENCHES and t["probe_leaks"] == ["cpuid_hypervisor_bit"]
        # One I/O exit per `in`, none for a system call or a division by zero.
        assert t["nanobench"]["in"]["traps_per_iter"] == 1
        assert t["nanobench"]["in"]["exits_per_iter_by_reason"] == {"io_instruction": 1}
        assert t["nanobench"]["syscall"]["traps_per_iter"] == 0
        assert t["nanobench"]["divzero"]["traps_per_iter"] == 0
    assert shadow["command"] == "ringvisor run --engine soft --technique hw --paging shadow"
    assert ept["command"] == "ringvisor run --engine soft --technique hw --paging ept"
    # Nested paging took the exits out of page faults and page-table writes.
    assert ept["nanobench"]["pgfault"]["traps_per_iter"] == 0
    assert ept["nanobench"]["ptemod"]["traps_per_iter"] == 0
    assert shadow["nanobench"]["pgfault"]["traps_per_iter"] >= 1
    assert shadow["nanobench"]["ptemod"]["traps_per_iter"] >= 1
