"""`ringvisor compare`'s container column and the container probe."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ctrbench():
    subprocess.run(["make", "-s", "-C", str(ROOT / "guests" / "container")], check=True)
    return ROOT / "guests" / "container" / "build" / "ctrbench"


def test_ctrbench_on_the_host(ctrbench):
    out = subprocess.run([ctrbench, "nanobench", "20"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert [line.split()[1] for line in out] == ["getpid", "pgfault", "divzero", "mprotect"]
    assert all(line.split()[2] == "iters=20" for line in out)
    probe = subprocess.run([ctrbench, "probe"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert probe[-1] in ("container visible: yes", "container visible: no")
    assert any(line.startswith("probe pid_namespace ") and line.endswith(" ok") for line in probe)
    bad = subprocess.run([ctrbench, "nanobench", "1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "at least 10" in bad.stderr


def test_compare_container_column(ctrbench, tmp_path):
    doc_path = tmp_path / "c.json"
    proc = subprocess.run([sys.executable, "-m", "ringvisor", "compare", "--only", "container",
                           "--iters", "20", "--json", str(doc_path)], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(doc_path.read_text())
    assert doc["unavailable"] == {}
    column = doc["techniques"]["container"]
    assert set(column["nanobench"]) == {"syscall", "pgfault", "divzero", "mprotect"}
    for row in column["nanobench"].values():
        assert row["ns_per_iter"] > 0 and row["host_ns_per_iter"] > 0
        assert row["ratio_to_native"] == pytest.approx(row["ns_per_iter"] / row["host_ns_per_iter"])
    # in a container of runc's default spec: PID 1, a bound root, masked /proc, fewer caps
    assert column["probe_visible"] is True
    assert {"pid_namespace", "mountinfo_root", "capability_bounding_set",
            "no_new_privs"} <= set(column["probe_leaks"])
    assert column["probe_lines"][-1] == "container visible: yes"
    assert "mprotect" in proc.stdout and "container" in proc.stdout
