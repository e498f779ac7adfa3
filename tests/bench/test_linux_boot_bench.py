"""bench/linux_boot.py without booting Linux: its rows and run counts, the
command line it gives QEMU (ringvisor's own for the native pc machine), and
the profiler's attribution on a short soft-engine run."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import linux_boot  # noqa: E402


def test_run_counts():
    assert linux_boot.run_counts("native=3,bt,trap:3=1,qemu=5", 2) == {"native": 3, "bt": 2, "trap:3": 1,
                                                                     "qemu": 5}
    for bad in ("native,vmware", "native=0", "native=x", ","):
        with pytest.raises(SystemExit):
            linux_boot.run_counts(bad, 3)


def test_qemu_gets_the_command_line_ringvisor_gives_its_native_pc_machine():
    from ringvisor.boot import linux
    line = linux_boot.qemu_command_line()
    assert line == linux.command_line("", 0, apic=True)
    assert "console=ttyS0" in line and "nolapic" not in line and "reservetop" not in line


def test_the_profile_charges_a_soft_run_to_compiled_traces(ringos):
    from ringvisor.vm import VmConfig, build_machine
    sampler = linux_boot.Sampler()
    machine = build_machine(VmConfig(kernel=str(ringos / "ringos.elf"), engine="soft", technique="native",
                                     cmdline="workload=compute iters=300"), lambda data: None)
    sampler.start()
    try:
        result = machine.run()
    finally:
        samples = sampler.stop()
        machine.close()
    assert result.status == 0
    names = {name for name, _ in linux_boot.CATEGORIES}
    assert set(samples) <= names | {"other (Python start-up, imports)"}
    # ringos's compute workload spends its time in hot loops: compiled code
    # leads (not the local APIC's poll that follows each trace: see below).
    assert max(samples, key=samples.get) == "compiled traces"


def frames(*files):
    """A stack of real frames, outermost first, each running code that
    claims to come from one of `files` (a file, or file:function)."""
    src, env = "", {"sys": sys}
    for i, spec in enumerate(files):
        file, _, name = spec.partition(":")
        inner = f"f{i + 1}()" if i + 1 < len(files) else "sys._getframe()"
        exec(compile(f"def {name or f'f{i}'}():\n    x = 1\n    return {inner}\n", file, "exec"), env)
        env[f"f{i}"] = env[name or f"f{i}"]
    return env["f0"]()


SRC = "/x/src/ringvisor"


@pytest.mark.parametrize("stack, category", [
    (("<trace>", f"{SRC}/cpu/semantics/system.py"), "compiled traces"),
    ((f"{SRC}/cpu/compiler/coldpath.py", f"{SRC}/cpu/semantics/system.py"), "interpreter (cold code)"),
    ((f"{SRC}/monitors/trap/monitor.py", f"{SRC}/cpu/semantics/system.py"),
     "monitor (traps, emulation, shadow paging, translation)"),
    ((f"{SRC}/cpu/compiler/blocks.py:_code",), "trace compilation"),
    (("<trace>", f"{SRC}/cpu/paging.py"), "paging (TLB fills, page walks)"),
    ((f"{SRC}/cpu/engine.py", f"{SRC}/devices/uart.py"), "devices and platform"),
    (("<stdin>",), "other (Python start-up, imports)"),
])
def test_a_sample_goes_to_the_innermost_frame_that_names_a_category(stack, category):
    sampler = linux_boot.Sampler()
    sampler._sample(None, frames(*stack))
    assert dict(sampler.samples) == {category: 1}


def test_the_report_gives_medians_and_ratios_by_cpu_time(tmp_path, capsys):
    import json
    run = lambda cpu, ins=None, **more: {"seconds": 2 * cpu, "cpu": cpu, "instructions": ins, **more}
    (tmp_path / "a.json").write_text(json.dumps({
        "native": [run(cpu, 300_000_000, first_cpu=10.0) for cpu in (100, 120, 500)],
        "trap": [run(240, 300_000_000, monitor={"traps": 1000, "traps_by_kind": {"#GP": 600, "#PF": 400},
                                                  "monitor_host_seconds": 0.1, "monitor_us_per_trap": 100.0})],
        "bt": []}))
    (tmp_path / "b.json").write_text(json.dumps({"qemu": [run(3.0, first_cpu=2.0)]}))
    linux_boot.report(linux_boot.load_runs([str(tmp_path / "a.json"), str(tmp_path / "b.json")]))
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-3:] == [
        "linux_boot native seconds=240.0 cpu_seconds=120.0 instructions=300000000 vs_qemu=40.0 "
        "cpu_after_console=110.0 vs_qemu_after_console=110.0",
        "linux_boot trap seconds=480.0 cpu_seconds=240.0 instructions=300000000 vs_native=2.00 vs_qemu=80.0",
        "linux_boot qemu seconds=6.0 cpu_seconds=3.0 instructions=n/a cpu_after_console=1.0"]
    assert "#GP                                      600" in out
    with pytest.raises(SystemExit):
        linux_boot.load_runs([str(tmp_path / "missing.json")])
