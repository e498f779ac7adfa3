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
