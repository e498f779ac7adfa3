"""`ringvisor run --engine soft --technique bt`: the bundled guest OS under
binary translation from the command line, and `compare` measuring it."""
from __future__ import annotations

import json
import subprocess
import sys

BT = ("--engine", "soft", "--technique", "bt")


def ringvisor(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "ringvisor", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def test_compute_gives_the_reference_checksum_and_translation_statistics(ringos, tmp_path):
    stats = tmp_path / "s.json"
    proc = ringvisor("run", *BT, "--workload", "compute", "--cmdline", "iters=10", "--json", str(stats))
    assert proc.returncode == 0, proc.stderr
    assert "compute checksum=09ff79a6 instructions=1206750" in proc.stdout.splitlines()
    mon = json.loads(stats.read_text())["monitor"]
    tr = mon["translation"]
    assert mon["technique"] == "bt"
    assert tr["blocks_translated"] > 0 and tr["instructions_per_block"] > 1
    assert tr["callouts"] == sum(tr["callouts_by_kind"].values()) == mon["traps_by_kind"]["callout"]
    assert tr["cache_bytes_used"] > 0


def test_probe_verdict_and_stats_table(ringos):
    proc = ringvisor("run", *BT, "--workload", "probe", "--stats")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.replace("\r", "").splitlines()
    assert "virtualization visible: no" in out
    assert not [l for l in out if l.startswith("probe ") and not l.endswith(" ok")]
    assert "translation.blocks_translated" in proc.stderr     # the --stats tables


def test_ring_3_is_refused_in_one_line():
    proc = ringvisor("run", *BT, "--ring", "3")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "ringvisor: --ring applies to --technique trap only"


def test_compare_measures_bt(ringos, tmp_path):
    doc_path = tmp_path / "c.json"
    proc = ringvisor("compare", "--only", "bt", "--iters", "20", "--rounds", "1", "--json", str(doc_path))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(doc_path.read_text())
    assert "bt" not in doc["unavailable"]
    bt = doc["techniques"]["bt"]
    assert bt["probe_visible"] is False
    # Every `in` iteration is one io callout (the first ones also translate).
    assert 1 <= bt["nanobench"]["in"]["traps_per_iter"] < 2


def test_trace_names_the_callouts_at_guest_addresses(ringos, tmp_path):
    trace = tmp_path / "t.txt"
    proc = ringvisor("run", *BT, "--workload", "probe", "--trace", str(trace))
    assert proc.returncode == 0, proc.stderr
    lines = trace.read_text().splitlines()
    first = lines[1].split()
    assert first[1:4] == ["callout", "miss", "ring"] and "blocks translated" in lines[1]
    sgdt = [l for l in lines if " callout sgdt " in l]
    assert len(sgdt) == 1 and "0008:001" in sgdt[0] and "emulated SGDT" in sgdt[0]
    # Every trap is shown where the guest is: never at a translation-cache address.
    assert not [l for l in lines[1:] if ":f0" in l.split("ring 1", 1)[-1][:20]]
