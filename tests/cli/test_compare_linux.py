"""`ringvisor compare --guest linux` without booting: its options, the
one-line errors before any boot, and the parser on a recorded run (the
console lines of guests/linux/nanobench and the RDTSC log around them)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from ringvisor import guests
from ringvisor.compare import linux_guest, report
from ringvisor.compare.techniques import ALL


def compare(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ringvisor", "compare", *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120, env=env)


def one_line_error(proc, code=2):
    assert proc.returncode == code and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_without_make_linux_it_says_so_in_one_line(tmp_path):
    import os
    env = {**os.environ, "RINGVISOR_GUESTS": str(tmp_path)}
    line = one_line_error(compare("--guest", "linux", env=env))
    assert "run `make linux`" in line and str(tmp_path / "linux" / "build") in line


@pytest.fixture
def fake_build(tmp_path, monkeypatch):
    """A guests/linux/build with stand-in files: enough for the checks made before any boot."""
    build = tmp_path / "linux" / "build"
    build.mkdir(parents=True)
    for name in ("vmlinuz", "initrd.cpio.gz"):
        (build / name).write_bytes(b"stand-in")
    monkeypatch.setenv("RINGVISOR_GUESTS", str(tmp_path))      # for ringvisor in a subprocess
    monkeypatch.setattr(guests, "ROOT", tmp_path)                # and here (read at import)
    import os
    return {**os.environ, "RINGVISOR_GUESTS": str(tmp_path)}


def test_options_that_cannot_apply_are_refused_before_booting(fake_build):
    for args, message in ((("--iters", "9000"), "--iters 9000: with --guest linux at most 8000"),
                          (("--iters", "5"), "--iters must be at least 10"),
                          (("--only", "native,container"), "the container column goes with the bundled guest"),
                          (("--only", "native,nope"), "unknown technique 'nope'")):
        assert message in one_line_error(compare("--guest", "linux", *args, env=fake_build))
    proc = compare("--guest", "bsd")
    assert proc.returncode == 2 and "invalid choice: 'bsd'" in proc.stderr


def test_techniques_debians_kernel_cannot_use_are_refused_with_their_reason(fake_build):
    line = one_line_error(compare("--guest", "linux", "--only", "pv,hw-shadow+pv", env=fake_build))
    assert line.startswith("ringvisor: nothing to measure here: ")
    assert "pv: a stock Linux kernel is not written for ringvisor's PV ABI" in line
    assert "hw-shadow+pv: enlighten=1 is ringos's paravirtual MMU hint" in line
    for t in ALL:
        why = linux_guest.refusal(t)
        if t.engine == "soft" and t.name not in ("pv", "hw-shadow+pv"):
            assert why is None, (t.name, why)


def test_the_estimate_names_every_boot_and_adds_up_their_minutes():
    chosen = [t for t in ALL if t.name in ("native", "hw-ept")]
    text = linux_guest.estimate(chosen)
    low = linux_guest.MINUTES["native"][0] + linux_guest.MINUTES["hw-ept"][0]
    high = linux_guest.MINUTES["native"][1] + linux_guest.MINUTES["hw-ept"][1]
    assert text.startswith("2 boot(s) of Debian's kernel (native, hw-ept)")
    assert f"about {low}-{high} minutes of CPU time" in text


# Recorded 2026-12-06: Debian's kernel natively on the soft engine, `rdinit-nanobench=200`
# (the console's nanobench lines; the host was loaded, so the times are inflated).
NATIVE_LINES = [
    'linux guest ready: Linux 6.1.0-50-686',
    'nanobench syscall iters=200 cycles_per_iter=254688 tsc_begin=178842511231 tsc_end=178893448965',
    'nanobench in iters=200 cycles_per_iter=33534 tsc_begin=178988896873 tsc_end=178995603721',
    'nanobench call/ret iters=200 cycles_per_iter=25931 tsc_begin=179172041123 tsc_end=179177227510',
    'nanobench pgfault iters=200 cycles_per_iter=5583246 tsc_begin=179287552834 tsc_end=180404202192',
    'nanobench divzero iters=200 cycles_per_iter=5325500 tsc_begin=182000927770 tsc_end=183066027836',
    'nanobench mprotect iters=200 cycles_per_iter=5999574 tsc_begin=183137047584 tsc_end=184336962452',
    'nanobench exit status 0',
]
# the RDTSC log's entries at and beside those reads: (host ns, traps so far)
NATIVE_LOG = [
    (1788425031780, 0),
    (1788425112310, 0),
    (1788425263324, 0),
    (1788934355938, 0),
    (1788934489657, 0),
    (1789003260851, 0),
    (1789888698109, 0),
    (1789888968730, 0),
    (1789956037210, 0),
    (1789998408280, 0),
    (1791720193151, 0),
    (1791720411234, 0),
    (1791772275106, 0),
    (1792463012125, 0),
    (1792875269053, 0),
    (1792875528348, 0),
    (1793080382588, 0),
    (1803973610356, 0),
    (1804042021927, 0),
    (1806560167512, 0),
    (1820009051718, 0),
    (1820009277703, 0),
    (1820039539352, 0),
    (1830660150557, 0),
    (1830660278366, 0),
    (1830852392841, 0),
    (1831370180856, 0),
    (1831370475843, 0),
    (1831511527124, 0),
    (1843369530062, 0),
    (1843369624522, 0),
    (1843774148537, 0),
]


def test_the_parser_finds_each_loop_in_the_rdtsc_log_by_its_values():
    bench = linux_guest.parse(NATIVE_LINES, NATIVE_LOG)
    assert list(bench) == ["syscall", "in", "call/ret", "pgfault", "divzero", "mprotect"]
    # syscall: its reads are the log's 2nd and 5th entries kept here (Linux read the TSC in between)
    assert bench["syscall"]["ns_per_iter"] == (1788934489657 - 1788425112310) / 200
    for name, e in bench.items():
        assert e["traps_per_iter"] == 0, name
        # the program's own cycles (host ns / 10, floored per read) agree with the log's ns
        assert abs(e["guest_cycles_per_iter"] * 10 - e["ns_per_iter"]) < 20, name


def test_traps_and_exits_by_reason_are_differenced_between_the_two_reads():
    lines = ["nanobench syscall iters=10 cycles_per_iter=50 tsc_begin=100 tsc_end=600"]
    log = [(990, 7), (1000, 7), (3000, 20), (6005, 27), (7000, 30)]
    reasons = [None, {"io_instruction": 3}, None, {"io_instruction": 5, "cpuid": 10}, None]
    e = linux_guest.parse(lines, log, reasons)["syscall"]
    assert e["ns_per_iter"] == 500.5 and e["traps_per_iter"] == 2.0
    assert e["exits_per_iter_by_reason"] == {"io_instruction": 0.2, "cpuid": 1.0}


@pytest.mark.parametrize("lines, message", [
    (NATIVE_LINES[:1], "printed no nanobench lines"),
    (["nanobench: mmap2 failed (too many iterations for the memory?)", "nanobench exit status 1"],
     "nanobench exited with status 1: nanobench: mmap2 failed"),
    (["nanobench syscall iters=200 cycles_per_iter=1 tsc_begin=5 tsc_end=205"],
     "its RDTSC value 5 is not in the log"),
])
def test_a_run_that_did_not_measure_is_an_error_not_a_figure(lines, message):
    with pytest.raises(RuntimeError, match=message.replace("?", r"\?").replace("(", r"\(").replace(")", r"\)")):
        linux_guest.parse(lines, NATIVE_LOG)


def test_the_table_for_linux_has_no_mips_or_probe_rows_and_shows_the_papers_figures():
    from rich.console import Console
    bench = linux_guest.parse(NATIVE_LINES, NATIVE_LOG)
    for e in bench.values():
        e["ratio_to_native"] = 1.0
    doc = {"guest": "linux", "unavailable": {}, "techniques": {
        "native": {"command": "...", "nanobench": bench, "skipped": {"in": "ioperm(0x21) refused"}}}}
    console = Console(width=200, record=True)
    console.print(report.table(doc))
    text = console.export_text()
    assert "compute MIPS" not in text and "probe" not in text
    assert "mprotect" in text and "1,093 / 3,927 / 11,242" in text       # pgfault, the paper's three
    assert report.notes(doc) == ["native: in not measured: ioperm(0x21) refused"]


# Recorded the same day under hw on the soft CPU's VMX with EPT (`--technique hw --paging ept`).
HW_EPT_LINES = [
    'nanobench syscall iters=200 cycles_per_iter=582065 tsc_begin=231377262986 tsc_end=231493676175',
    'nanobench in iters=200 cycles_per_iter=1469441 tsc_begin=231613957991 tsc_end=231907846271',
    'nanobench call/ret iters=200 cycles_per_iter=20322 tsc_begin=231998419947 tsc_end=232002484465',
    'nanobench pgfault iters=200 cycles_per_iter=3309603 tsc_begin=232108298020 tsc_end=232770218706',
    'nanobench divzero iters=200 cycles_per_iter=3409182 tsc_begin=233868418643 tsc_end=234550255109',
    'nanobench mprotect iters=200 cycles_per_iter=3543085 tsc_begin=234621197336 tsc_end=235329814502',
    'nanobench exit status 0',
]
# (host ns, VM exits so far) at those reads, and the exits by reason there
HW_EPT_LOG = [
    (2313772629864, 52872),
    (2314936761751, 52897),
    (2316139579910, 53043),
    (2319078462718, 53243),
    (2319984199477, 53384),
    (2320024844658, 53384),
    (2321082980204, 53529),
    (2327702187062, 53555),
    (2338684186433, 53750),
    (2345502551097, 53801),
    (2346211973365, 53947),
    (2353298145029, 53972),
]
HW_EPT_REASONS = [
    {'cpuid': 374, 'cr_access': 1, 'preemption_timer': 2468, 'io_instruction': 49883, 'interrupt_window': 146},
    {'cpuid': 374, 'cr_access': 1, 'preemption_timer': 2470, 'io_instruction': 49905, 'interrupt_window': 147},
    {'cpuid': 374, 'cr_access': 1, 'preemption_timer': 2470, 'io_instruction': 50047, 'interrupt_window': 151},
    {'cpuid': 374, 'cr_access': 1, 'preemption_timer': 2470, 'io_instruction': 50247, 'interrupt_window': 151},
    {'cpuid': 374, 'cr_access': 1, 'preemption_timer': 2470, 'io_instruction': 50384, 'interrupt_window': 155},
    {'cpuid': 374, 'cr_access': 1, 'preemption_timer': 2470, 'io_instruction': 50384, 'interrupt_window': 155},
    {'cpuid': 374, 'cr_access': 1, 'preemption_timer': 2470, 'io_instruction': 50525, 'interrupt_window': 159},
    {'cpuid': 374, 'cr_access': 1, 'preemption_timer': 2474, 'io_instruction': 50547, 'interrupt_window': 159},
    {'cpuid': 374, 'cr_access': 1, 'preemption_timer': 2479, 'io_instruction': 50733, 'interrupt_window': 163},
    {'cpuid': 374, 'cr_access': 1, 'preemption_timer': 2485, 'io_instruction': 50777, 'interrupt_window': 164},
    {'cpuid': 374, 'cr_access': 1, 'preemption_timer': 2485, 'io_instruction': 50919, 'interrupt_window': 168},
    {'cpuid': 374, 'cr_access': 1, 'preemption_timer': 2488, 'io_instruction': 50941, 'interrupt_window': 168},
]


def test_a_recorded_hw_ept_run_exits_only_for_in_and_the_timer():
    bench = linux_guest.parse(HW_EPT_LINES, HW_EPT_LOG, HW_EPT_REASONS)
    assert bench["in"]["traps_per_iter"] == 1.0
    assert bench["in"]["exits_per_iter_by_reason"] == {"io_instruction": 1.0}
    assert bench["call/ret"]["traps_per_iter"] == 0 and bench["call/ret"]["exits_per_iter_by_reason"] == {}
    for name in ("syscall", "pgfault", "divzero", "mprotect"):
        e = bench[name]
        # nested paging: no #PF, CR3 or EPT exit; the timer ticks' port I/O only
        assert set(e["exits_per_iter_by_reason"]) <= {"io_instruction", "preemption_timer", "interrupt_window"}
        assert 0 < e["traps_per_iter"] < 0.5, name
        assert e["traps_per_iter"] == pytest.approx(sum(e["exits_per_iter_by_reason"].values()))


def test_the_command_prints_the_table_and_writes_the_json_for_linux(fake_build, monkeypatch, tmp_path, capsys):
    import json
    from argparse import Namespace
    from ringvisor.cli import compare as compare_cli
    chosen = []

    def measured(techniques, iters, progress=None):
        chosen.extend(t.name for t in techniques)
        progress("1 boot(s) of Debian's kernel (native): ...")
        bench = linux_guest.parse(NATIVE_LINES, NATIVE_LOG)
        for e in bench.values():
            e["ratio_to_native"] = 1.0
        return {"guest": "linux", "unavailable": {}, "techniques": {"native": {
            "command": "ringvisor run ...", "boot_seconds": 1.0, "boot_cpu_seconds": 1.0, "nanobench": bench}}}
    monkeypatch.setattr(linux_guest, "compare", measured)
    doc_path = tmp_path / "linux.json"
    args = Namespace(guest="linux", iters=None, rounds=4, chart=None, json=str(doc_path), only="native")
    assert compare_cli.command(args) == 0
    assert chosen == ["native"]
    out = capsys.readouterr()
    assert "compare --guest linux: 1 boot(s)" in out.err
    assert "pgfault" in out.out and "compute MIPS" not in out.out
    assert "linux: guests/linux/nanobench.c, a process of Debian's i386 kernel" in out.out
    doc = json.loads(doc_path.read_text())
    assert doc["guest"] == "linux" and doc["iters"] == 200 and "rounds" not in doc
    assert set(doc["techniques"]["native"]["nanobench"]) == {"syscall", "in", "call/ret", "pgfault", "divzero",
                                                             "mprotect"}
