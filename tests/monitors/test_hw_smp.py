"""The hw monitor with several vCPUs (`--technique hw --cpus N` on the soft
engine): one VMCS, VPID and soft CPU per vCPU, one EPT, interleaved by
machine/smp.py; APs started by INIT-SIPI-SIPI through the virtual APICs (in
real mode: natively under EPT's unrestricted guest, emulated under shadow
paging, monitors/hw/realmode.py); IPIs through the virtual APICs; shadow
page tables kept coherent across vCPUs (monitors/hw/shadow_peers.py)."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from monitor_rig import machine, run

PAGING = ["ept", "shadow"]
TASK_LINE = re.compile(r"^\[task (\d+)\] (.*?)(?: on cpu(\d+))?$")


def task_lines(out: list[str]) -> dict[str, list[str]]:
    """Each task's lines in its own order, without the CPU it ran on (which
    CPU takes which task depends on how the vCPUs' quanta fall)."""
    tasks: dict[str, list[str]] = {}
    for line in out:
        m = TASK_LINE.match(line)
        if m:
            tasks.setdefault(m[1], []).append(m[2])
    return tasks


@pytest.fixture(scope="module")
def native_tasks(ringos):
    result, out = run(ringos / "ringos.elf", "workload=tasks", technique="native", cpus=2)
    assert result.status == 0
    return out


@pytest.mark.parametrize("paging", PAGING)
def test_tasks_on_two_vcpus_print_what_native_prints(ringos, native_tasks, paging):
    result, out = run(ringos / "ringos.elf", "workload=tasks", technique="hw", paging=paging, cpus=2)
    assert result.status == 0, "\n".join(out)
    assert task_lines(out) == task_lines(native_tasks)
    assert "ringos: smp: 2 CPUs online, APIC IDs 0 1" in out
    assert "[init] CPUs that ran tasks: cpu0 cpu1 (every CPU: yes)" in out
    ran_on = {m[3] for m in map(TASK_LINE.match, out) if m and m[3]}
    assert ran_on == {"0", "1"}
    # The unmap on one vCPU reaches the other: under shadow paging that is
    # the shadows' coherence (the reader's shadow is stale otherwise).
    assert "tlb shootdown: ok (the reader faulted at its next access)" in out
    cpus = result.stats["cpus"]
    assert [c["cpu"] for c in cpus] == [0, 1]
    assert all(c["exits"] > 0 and c["instructions"] > 0 and c["ipis_received"] > 0 for c in cpus)
    assert cpus[0]["ipis_sent"] >= 3 and cpus[1]["startups"] == 1 and cpus[1]["inits"] == 1
    mon = result.stats["monitor"]
    assert mon["vcpus"] == 2 and mon["exits"] == sum(c["exits"] for c in cpus)
    if paging == "shadow":
        shadow = mon["shadow_paging"]
        assert shadow["frames_protected_for_peers"] > 0
        assert shadow["pte_writes_mirrored_from_peers"] > 0
        assert mon["real_mode_start_instructions_emulated"] > 0
    else:
        assert "real_mode_start_instructions_emulated" not in mon
        assert mon["mmio_exits_by_page"]["0xfee00000"] > 0


@pytest.mark.parametrize("paging", PAGING)
def test_the_apic_test_kernel_passes_on_three_vcpus(test_kernels, paging):
    """INIT-SIPI-SIPI to every AP, IPIs both ways, the APIC timer and the
    I/O APIC, as on bare hardware (tests/machine/test_smp.py runs it natively)."""
    result, out = run(test_kernels / "apic.elf", technique="hw", paging=paging, cpus=3)
    assert result.status == 0, "\n".join(out)
    assert "apic done failures=0" in out
    assert "APs alive=2 ids=0x00000006" in out and "ok an IPI to every AP" in out
    cpus = result.stats["cpus"]
    assert [c["startups"] for c in cpus] == [0, 1, 1]
    assert all(c["exits"] > 0 for c in cpus)


@pytest.mark.parametrize("paging", PAGING)
def test_a_spinning_vcpu_gives_up_its_turn_through_pause_exiting(test_kernels, paging):
    """With several vCPUs the monitor sets PAUSE exiting, and a PAUSE exit
    ends that vCPU's turn (as machine/smp.py ends a soft CPU's): the BSP
    waiting for its AP spins a few thousand instructions, not 43,000 (the
    native figure without yields, tests/machine/test_smp_pause.py)."""
    result, out = run(test_kernels / "apic.elf", technique="hw", paging=paging, cpus=2)
    assert "apic done failures=0" in out
    cpu0 = result.stats["cpus"][0]
    assert cpu0["pause_yields"] > 0 and cpu0["instructions"] < 10_000
    assert result.stats["monitor"]["exits_by_reason"]["pause"] == \
        sum(c["pause_yields"] for c in result.stats["cpus"])
    one, _ = run(test_kernels / "apic.elf", technique="hw", paging=paging)
    assert "pause" not in one.stats["monitor"]["exits_by_reason"]       # one vCPU: PAUSE stays in


def test_runs_repeat_to_the_instruction(test_kernels):
    first = run(test_kernels / "apic.elf", technique="hw", cpus=2)[0].stats["cpus"]
    again = run(test_kernels / "apic.elf", technique="hw", cpus=2)[0].stats["cpus"]
    assert first == again


def test_each_vcpu_has_its_own_vmcs_and_vpid_and_shares_the_ept(test_kernels):
    m = machine(test_kernels / "apic.elf", technique="hw", cpus=3)
    try:
        vcpus = m.engine.smp_cpus
        assert len(vcpus) == 3 and vcpus[0] is m.engine
        assert len({id(v.vmcs) for v in vcpus}) == 3
        assert [v.vmcs["VPID"] for v in vcpus] == [1, 2, 3]
        assert len({v.vmcs["EPT_POINTER"] for v in vcpus}) == 1
        assert len({id(v.cpu) for v in vcpus}) == 3
        assert [v.apic for v in vcpus] == m.platform.pc.lapics
        # The soft CPUs underneath keep no APIC of their own: the monitor serves it.
        assert all(v.cpu.apic is None and v.cpu.interrupts is None for v in vcpus)
    finally:
        m.close()


def test_shadow_ap_start_in_real_mode_is_emulated_until_protected_mode(test_kernels):
    """Without unrestricted guest, the SIPI's real-mode start runs on the
    monitor's interpreter; the vCPU enters VMX non-root operation in
    protected mode with CS loaded from the guest's GDT."""
    m = machine(test_kernels / "apic.elf", technique="hw", paging="shadow", cpus=2)
    try:
        m.run()
        ap = m.engine.smp_cpus[1]
        assert ap.real_mode is None and ap.real_mode_instructions > 0
        st = ap.get_state()
        assert st.cr0 & 1 and st.cs.db and st.cs.selector & ~7
    finally:
        m.close()


@pytest.mark.parametrize("args, words", [
    (("--technique", "hw", "--machine", "isa", "--cpus", "2"), "need local APICs"),
    (("--technique", "trap", "--cpus", "2"), "native or hw"),
])
def test_what_cannot_apply_is_refused_in_one_line(args, words):
    proc = subprocess.run([sys.executable, "-m", "ringvisor", "run", "--engine", "soft", *args],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode != 0
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_stats_print_a_line_per_vcpu_with_its_exits(test_kernels):
    proc = subprocess.run([sys.executable, "-m", "ringvisor", "run", str(test_kernels / "apic.elf"),
                           "--engine", "soft", "--technique", "hw", "--cpus", "2", "--stats"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = re.findall(r"^cpu(\d) instructions=(\d+) apic_id=\d+ exits=(\d+) ", proc.stdout + proc.stderr, re.M)
    assert [l[0] for l in lines] == ["0", "1"] and all(int(l[2]) > 0 for l in lines)


@pytest.mark.parametrize("paging", PAGING)
def test_a_sipi_start_forgets_the_event_the_old_start_had_pending(test_kernels, paging):
    """Regression: an interrupt left in the VM-entry field (or a window
    exit asked for) before INIT must not be delivered into the new start."""
    from ringvisor.cpu.vmx import controls as C
    from ringvisor.machine.smp import startup_state
    m = machine(test_kernels / "apic.elf", technique="hw", paging=paging, cpus=2)
    try:
        ap = m.engine.smp_cpus[1]
        ap.vmcs["VM_ENTRY_INTR_INFO_FIELD"] = C.intr_info(0x30, C.TYPE_EXTERNAL)
        ap.vmcs["CPU_BASED_VM_EXEC_CONTROL"] |= C.CPU_INTERRUPT_WINDOW_EXITING
        ap.set_state(startup_state(0x9A, 0x652))
        assert not ap.vmcs["VM_ENTRY_INTR_INFO_FIELD"] & C.INTR_VALID
        assert not ap.vmcs["CPU_BASED_VM_EXEC_CONTROL"] & C.CPU_INTERRUPT_WINDOW_EXITING
        st = ap.get_state()                 # real mode, at the SIPI's vector
        assert (st.cs.selector, st.cs.base, st.eip, st.cr0 & 1) == (0x9A00, 0x9A000, 0, 0)
    finally:
        m.close()


def test_the_trace_shows_every_vcpus_exits(test_kernels, tmp_path):
    trace = tmp_path / "trace.txt"
    proc = subprocess.run([sys.executable, "-m", "ringvisor", "run", str(test_kernels / "apic.elf"),
                           "--engine", "soft", "--technique", "hw", "--cpus", "2", "--trace", str(trace)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = trace.read_text()
    # The AP's first exits: its APIC page, read and written (EPT violations).
    assert re.search(r"vmexit ept_violation +cpu1 0008:[0-9a-f]{8} .*gpa 0xfee000", text)
    assert re.search(r"vmexit \w+ +cpu0 ", text)


@pytest.mark.parametrize("paging, seen", [("ept", "STALE"), ("shadow", "ok")])
def test_without_the_shootdown_ipi(ringos, paging, seen):
    """The control of ringos's shootdown check (shootdown=0: no IPI). Under
    EPT each vCPU's tagged TLB is real, so the reader still reads the
    unmapped page, as natively; under shadow paging the PTE write was
    mirrored into the reader's shadow at once (stricter than a TLB)."""
    result, out = run(ringos / "ringos.elf", "workload=tasks iters=1 shootdown=0", technique="hw",
                      paging=paging, cpus=2)
    assert any(line.startswith(f"tlb shootdown: {seen} ") for line in out), "\n".join(out)
