"""Several CPUs on the soft engine (machine/smp.py) and the pc machine as a
test kernel sees it (guests/tests/apic.c): IA32_APIC_BASE, the xAPIC page,
fw_cfg, the local APIC timer, the PIT through the I/O APIC, INIT-SIPI-SIPI,
IPIs both ways; `--stats` prints `cpu<N> instructions=<count>` per CPU;
runs repeat to the instruction; the options that cannot apply are refused
in one line."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ringvisor.machine.smp import init_state, startup_state
from ringvisor.vm import VmConfig, build_machine

ROOT = Path(__file__).resolve().parents[2]
SOFT = ("--engine", "soft")


@pytest.fixture(scope="module")
def apic_kernel(test_kernels) -> Path:
    return test_kernels / "apic.elf"


def ringvisor(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "ringvisor", "run", *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=timeout)


def run_machine(kernel, cpus, **config):
    out = bytearray()
    machine = build_machine(VmConfig(kernel=str(kernel), engine="soft", technique="native", cpus=cpus,
                                     timeout=60, **config), out.extend)
    try:
        return machine.run(), out.decode().replace("\r", "")
    finally:
        machine.close()


@pytest.mark.parametrize("cpus", [1, 2, 3])
def test_the_apic_test_kernel_passes_on_n_cpus(apic_kernel, cpus):
    result, out = run_machine(apic_kernel, cpus)
    assert result.status == 0, out
    assert f"fw_cfg cpus={cpus}" in out
    assert "IA32_APIC_BASE=0xfee00900" in out
    assert "ok local APIC timer: 3 periodic interrupts" in out
    assert "ok PIT through I/O APIC pin 2: 3 interrupts" in out
    if cpus > 1:
        assert f"APs alive={cpus - 1} " in out and "ok an IPI to every AP" in out
    assert "FAIL" not in out


def test_aps_start_at_the_sipi_vector_after_init(apic_kernel):
    result, out = run_machine(apic_kernel, 2)
    cpus = result.stats["cpus"]
    assert [c["cpu"] for c in cpus] == [0, 1]
    ap = cpus[1]
    # INIT, then two SIPIs of which the second finds the AP running (ignored).
    assert ap["inits"] == 1 and ap["startups"] == 1 and ap["ipis_received"] == 4
    assert ap["instructions"] > 0 and ap["ipis_sent"] == 1
    assert cpus[0]["ipis_sent"] == 4 and cpus[0]["ipis_received"] == 1


def test_runs_repeat_to_the_instruction(apic_kernel):
    first = run_machine(apic_kernel, 3)[0].stats["cpus"]
    again = run_machine(apic_kernel, 3)[0].stats["cpus"]
    assert [c["instructions"] for c in first] == [c["instructions"] for c in again]


def test_stats_print_one_line_per_cpu(apic_kernel):
    proc = ringvisor(str(apic_kernel), *SOFT, "--cpus", "2", "--stats")
    assert proc.returncode == 0, proc.stderr
    per_cpu = [line for line in proc.stderr.splitlines() if re.match(r"cpu\d+ instructions=\d+ ", line)]
    assert [line.split()[0] for line in per_cpu] == ["cpu0", "cpu1"]
    assert all("ipis_sent=" in line and "ipis_received=" in line for line in per_cpu)


def test_the_init_and_startup_states_are_the_sdms():
    init = init_state(0x652)
    assert (init.cs.selector, init.cs.base, init.eip, init.edx) == (0xF000, 0xFFFF0000, 0xFFF0, 0x652)
    assert init.cr0 == 0x60000010 and init.eflags == 2 and init.idt.limit == 0xFFFF
    start = startup_state(0x9A, 0x652)
    assert (start.cs.selector, start.cs.base, start.eip) == (0x9A00, 0x9A000, 0)


@pytest.mark.parametrize("args, words", [
    (("--technique", "trap", "--cpus", "2"), "trap monitor runs one vCPU"),
    (("--technique", "bt", "--cpus", "2"), "bt monitor runs one vCPU"),
    (("--technique", "pv", "--cpus", "2"), "pv monitor runs one vCPU"),
    (("--technique", "native", "--machine", "isa", "--cpus", "2"), "need local APICs"),
    (("--technique", "native", "--cpus", "0"), "at least one CPU"),
    (("--technique", "pv", "--machine", "pc"), "hypercalls, not an APIC"),
])
def test_what_cannot_apply_is_refused_in_one_line(args, words):
    proc = ringvisor(*SOFT, *args)
    assert proc.returncode != 0
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_every_cpu_halted_with_interrupts_off_is_a_crash_not_a_hang(test_kernels):
    """`crash.elf how=2` halts with IF=0 on the BSP while the AP waits for a
    SIPI: nothing can wake either."""
    out = bytearray()
    machine = build_machine(VmConfig(kernel=str(test_kernels / "crash.elf"), cmdline="how=2",
                                     engine="soft", technique="native", cpus=2, timeout=30), out.extend)
    from ringvisor.errors import GuestCrashed
    try:
        with pytest.raises(GuestCrashed, match="halted with interrupts disabled"):
            machine.run()
    finally:
        machine.close()


def test_no_tsc_deadline_timer_on_a_cpu_without_sse2(apic_kernel):
    """Regression: Linux fences the TSC-deadline MSR write with MFENCE (SSE2),
    which this CPU lacks: reporting the mode made Debian's kernel #UD in
    __setup_APIC_LVTT. The pc machine's APICs do not offer it."""
    from ringvisor.devices.lapic import CPUID1_ECX_TSC_DEADLINE, cpuid1
    machine = build_machine(VmConfig(kernel=str(apic_kernel), engine="soft", technique="native", cpus=2),
                            lambda data: None)
    try:
        for apic in machine.platform.pc.lapics:
            assert not apic.tsc_deadline_supported
            assert not cpuid1(apic, 0, 0, 0)[1] & CPUID1_ECX_TSC_DEADLINE
            assert apic.read_msr(0x6E0) is None                  # RDMSR: #GP
    finally:
        machine.close()
