"""Guests that break, attack or rewrite themselves under the binary-translation
monitor: a clear report and a non-zero exit for the broken ones (never a
traceback), the POPF hole closed, the monitor's memory out of reach,
self-modifying kernel code kept correct, and interrupts landing inside the
cache's inline returns."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ringvisor.errors import GuestCrashed
from monitor_rig import machine, run

ROOT = Path(__file__).resolve().parents[2]


def built(test_kernels, name: str) -> Path:
    subprocess.run(["make", "-s", "-C", str(ROOT / "guests" / "tests"), f"build/{name}"], check=True)
    return test_kernels / name


@pytest.fixture(scope="module")
def smc(test_kernels) -> Path:
    return built(test_kernels, "smc.elf")


def crash_report(kernel, cmdline) -> str:
    with pytest.raises(GuestCrashed) as e:
        run(kernel, cmdline, technique="bt")
    assert e.value.exit_code == 4
    return str(e.value)


def test_cli_hlt_is_reported_with_the_virtual_state(test_kernels):
    report = crash_report(test_kernels / "crash.elf", "how=2")
    assert report.startswith("the guest halted with interrupts disabled (cli; hlt)")
    assert "virtual CPU: CPL 0 (real ring 1), IF=0" in report and "bt monitor" in report
    assert "protected mode, CPL 0, 32-bit code" in report
    assert "0xf0" not in report.split("\n  at ")[1]          # a guest EIP, not the cache's


@pytest.mark.parametrize("kernel, how, chain", [
    ("crash.elf", 1, "#UD -> #GP(0x33) -> #GP(0x6b) -> #GP(0x43)"),    # ud2 with an empty IDT
    ("hostile.elf", 1, "vector 0x30 -> #GP(0x182) -> #GP(0x6b) -> #GP(0x43)"),  # garbage IDT
    ("hostile.elf", 2, "#GP -> #GP(0x9) -> #GP(0x43)"),               # garbage GDT, far jump
])
def test_triple_faults_are_virtual_shutdowns_at_the_guest_eip(test_kernels, kernel, how, chain):
    report = crash_report(test_kernels / kernel, f"how={how}")
    assert f"the guest shut down: virtual triple fault ({chain}) at 0008:0010" in report


def test_the_popf_hole_is_closed(test_kernels):
    # Under trap the watchdog reports this guest (POPF cannot set IF at ring 1);
    # translated, its POPF is a callout that sets the virtual IF.
    result, out = run(test_kernels / "hostile.elf", "how=3", technique="bt")
    assert result.status == 0 and "3 timer ticks arrived" in out
    assert result.stats["monitor"]["translation"]["callouts_by_kind"]["popf"] >= 1


def test_a_kernel_spinning_with_interrupts_off_times_out_with_a_report(test_kernels):
    proc = subprocess.run([sys.executable, "-m", "ringvisor", "run", str(test_kernels / "crash.elf"),
                           "--engine", "soft", "--technique", "bt", "--cmdline", "how=3", "--timeout", "1"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert proc.returncode == 4 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("ringvisor: the guest did not finish within 1 s")
    assert "at 0008:0010" in proc.stderr and "jmp short" in proc.stderr


def test_the_monitors_memory_and_the_cache_are_out_of_reach(test_kernels):
    report = crash_report(test_kernels / "hostile.elf", "how=4")
    assert "memory the memory map reserves for the monitor" in report
    result, out = run(test_kernels / "hostile.elf", "how=5", technique="bt")
    assert result.status == 13 and "#GP at the monitor's hole" in out


def test_self_modifying_kernel_code_runs_the_new_bytes(smc):
    result, out = run(smc, technique="bt")
    assert result.status == 0, out
    assert [l for l in out if l.startswith("smc ")] == [
        "smc patch_other got=12 want=12 ok", "smc patch_ahead got=3 want=3 ok",
        "smc loop got=1225 want=1225 ok", "smc data got=2450 want=2450 ok"]
    tr = result.stats["monitor"]["translation"]
    # 52 patches each drop exactly the block they rewrite; the 50 stores to
    # the counter that lives between functions on the same page drop nothing.
    assert tr["code_page_writes"] == 102 and tr["code_write_steps"] == 102
    assert tr["invalidations"] == tr["blocks_invalidated"] == 52
    native = run(smc, technique="native")[1]
    assert [l for l in native if l.startswith("smc ")] == [l for l in out if l.startswith("smc ")]


def test_interrupts_inside_inline_returns_leave_the_guest_exact(test_kernels):
    # fib(22) with the PIT at ~12 kHz: 92 ticks, a third of them land between
    # the instructions of an inline RET, which the monitor completes.
    result, out = run(built(test_kernels, "irqcalls.elf"), "n=22", technique="bt")
    assert result.status == 0 and "irqcalls fib=17711 ok ticks>0" in out
    mon = result.stats["monitor"]
    assert mon["traps_by_kind"]["interrupt"] > 50
    assert mon["translation"]["return_fixups"] > 5
    assert mon["emulated"].get("RET", 0) == 0                   # every return stayed in the cache


def test_spinning_with_interrupts_off_is_reported(test_kernels):
    m = machine(built(test_kernels, "irqcalls.elf"), "spin=1", technique="bt")
    m.engine.masked_limit = 300_000
    with pytest.raises(GuestCrashed) as e:
        m.run()
    report = str(e.value)
    assert report.startswith("the guest has kept interrupts disabled for ")
    assert "spinning with interrupts off" in report and "bt monitor" in report


def test_a_kernel_reading_its_cpl_from_cs_sees_ring_0(test_kernels):
    # mips.elf prints CS.RPL: 1 under trap (the hole), 0 natively and under bt.
    lines = {t: [l for l in run(test_kernels / "mips.elf", technique=t)[1] if l.startswith("mips ")]
             for t in ("native", "trap", "bt")}
    assert lines["bt"] == lines["native"] and "mips rounds=1 cpl=0 primes=564" in lines["bt"]
    assert "mips rounds=1 cpl=1 primes=564" in lines["trap"]
