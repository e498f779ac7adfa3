"""`ringvisor compare`'s rough edges from issue 15 (2, 3, 4), in process and
without measuring: a MIPS figure that exists or says why not, a chart that
shows what --help says (and traps per iteration), and nothing-to-measure or
unwritable outputs refused before any measuring."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from argparse import Namespace

import pytest

from ringvisor.cli import compare as compare_cli
from ringvisor.cli.main import main
from ringvisor.compare import chart, measure, report
from ringvisor.compare.techniques import Technique
from ringvisor.errors import GuestCrashed, KvmUnavailable

NATIVE = Technique("native", "soft", "native")


class FakeRun:
    """measure.Run for compute: `seconds[iters]` of CPU, 1,000 instructions a round."""
    seconds: dict[int, float] = {}
    made: list[int] = []

    def __init__(self, t, cmdline, host_tsc=False, timeout=900):
        iters = int(re.search(r"iters=(\d+)", cmdline)[1])
        FakeRun.made.append(iters)
        self.cpu_seconds = FakeRun.seconds[iters]
        self.lines = [f"compute checksum=09ff79a6 instructions={iters * 1000}"]

    def find(self, pattern):
        return [m for m in map(pattern.match, self.lines) if m]


@pytest.fixture
def fake_runs(monkeypatch):
    monkeypatch.setattr(measure, "Run", FakeRun)
    FakeRun.made = []
    return FakeRun


def test_mips_measures_longer_until_the_figure_exists(fake_runs):
    fake_runs.seconds = {1: 0.10, 5: 0.12, 25: 0.30}
    mips, checksum, why = measure.compute_mips(NATIVE, 1)
    assert fake_runs.made == [1, 5, 25]
    assert mips == pytest.approx((25_000 - 1_000) / 0.20 / 1e6) and why is None
    assert checksum == "09ff79a6"


def test_mips_says_why_when_no_run_is_long_enough(fake_runs):
    fake_runs.seconds = {1: 0.1, 5: 0.1, 25: 0.11, 125: 0.12}
    mips, _, why = measure.compute_mips(NATIVE, 1)
    assert mips is None and fake_runs.made == [1, 5, 25, 125]
    assert "124 extra compute rounds took 0.020 s of CPU" in why


def doc_with(mips, note=None, traps=0.0):
    entry = {"probe_visible": False, "mips": mips,
             "nanobench": {"syscall": {"ns_per_iter": 1000.0, "traps_per_iter": traps,
                                       "ratio_to_native": 1.0}}}
    if note:
        entry["mips_note"] = note
    return {"techniques": {"native": entry}, "unavailable": {}}


def test_table_and_notes_give_the_reason_beside_a_missing_figure():
    from rich.console import Console
    doc = doc_with(None, "4 extra compute rounds took 0.010 s of CPU")
    console = Console(width=300, record=True, file=open(os.devnull, "w"))
    console.print(report.table(doc))
    assert "? (too fast to time, see below)" in console.export_text()
    assert report.notes(doc) == ["native: compute MIPS not measured: 4 extra compute rounds took 0.010 s of CPU"]
    assert report.notes(doc_with(12.5)) == []


def test_chart_shows_time_and_traps_per_iteration(tmp_path):
    doc = doc_with(10.0, traps=2.0)
    doc["techniques"]["hw"] = {"probe_visible": False, "mips": 50.0, "nanobench": {
        "syscall": {"ns_per_iter": 300.0, "traps_per_iter": None, "ratio_to_native": 0.3}}}
    fig = chart.figure(doc)
    time_ax, traps_ax = fig.axes[:2]
    assert "host ns per iteration" in time_ax.get_ylabel()
    assert "traps" in traps_ax.get_ylabel() and "per iteration" in traps_ax.get_ylabel()
    assert "not attributable per loop: hw" in traps_ax.get_title()
    heights = [p.get_height() for p in traps_ax.patches]
    assert 2.0 in heights
    chart.draw(doc, str(tmp_path / "c.svg"))
    assert (tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")


def test_help_says_what_the_chart_draws():
    proc = subprocess.run([sys.executable, "-m", "ringvisor", "compare", "--help"], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, env=dict(os.environ, COLUMNS="300"),
                          timeout=60)
    line = next(ln for ln in proc.stdout.splitlines() if ln.strip().startswith("--chart"))
    assert "ratios" not in line and "host ns per iteration and traps per iteration" in line


@pytest.fixture
def no_measuring(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("compare measured although it should have refused first")
    monkeypatch.setattr(report, "compare", refuse)


def compare_args(**kw):
    base = dict(iters=1000, rounds=4, chart=None, json=None, only=None)
    base.update(kw)
    return Namespace(**base)


def test_only_techniques_that_cannot_run_is_refused_up_front(monkeypatch, no_measuring, capsys):
    monkeypatch.setattr(compare_cli, "refusal",
                        lambda t: KvmUnavailable("/dev/kvm is missing") if t.engine == "kvm" else None)
    with pytest.raises(KvmUnavailable, match="nothing to measure here: hw: /dev/kvm is missing"):
        compare_cli.command(compare_args(only="hw"))
    assert main(["compare", "--only", "hw"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ringvisor: nothing to measure here: hw: /dev/kvm is missing"]


def test_nothing_measured_after_all_is_not_exit_0(monkeypatch):
    monkeypatch.setattr(compare_cli, "refusal", lambda t: None)
    monkeypatch.setattr(report, "compare", lambda *a, **k: {
        "techniques": {}, "unavailable": {"hw": "the guest failed: exit status 4"}})
    monkeypatch.setattr(compare_cli, "detect", lambda: Namespace(name="none", description="none"))
    with pytest.raises(GuestCrashed, match="nothing was measured: hw: the guest failed"):
        compare_cli.command(compare_args(only="hw"))


@pytest.mark.parametrize("option, name, message", [
    ("--json", "missing/c.json", "the directory .*missing does not exist"),
    ("--chart", "missing/c.svg", "the directory .*missing does not exist"),
    ("--json", "adir", "is a directory"),
    ("--chart", "adir.svg", "is a directory"),
])
def test_unwritable_outputs_are_refused_before_measuring(tmp_path, no_measuring, capsys, option, name,
                                                         message):
    (tmp_path / "adir").mkdir()
    (tmp_path / "adir.svg").mkdir()
    assert main(["compare", option, str(tmp_path / name)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err
