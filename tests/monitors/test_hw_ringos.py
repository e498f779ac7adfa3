"""The bundled guest OS, unmodified, under the hw monitor on the soft CPU's
VMX, with nested paging (ept) and with shadow page tables (first-generation
VT-x): bare-hardware results, every sensitive instruction honest (probe all
`ok`), only CPUID naming the hypervisor, and the exits counted by reason."""
from __future__ import annotations

import pytest

from monitor_rig import run


@pytest.fixture(scope="module")
def native_compute(ringos):
    return [l for l in run(ringos / "ringos.elf", "workload=compute iters=2", technique="native")[1]
            if l.startswith("compute ")]


def test_compute_prints_what_bare_hardware_prints(ringos, native_compute):
    result, out = run(ringos / "ringos.elf", "workload=compute iters=2", technique="hw")
    assert result.status == 0
    assert [l for l in out if l.startswith("compute ")] == native_compute
    mon = result.stats["monitor"]
    assert mon["technique"] == "hw" and mon["paging"] == "ept"
    # Every port access of the guest is one I/O exit, handled on the machine's bus.
    ports = sum(p["reads"] + p["writes"] for p in result.stats["ports"])
    assert mon["exits_by_reason"]["io_instruction"] == ports
    assert mon["exits"] == sum(mon["exits_by_reason"].values())
    # Nested paging: no paging exits at all; the 2-D walk's cost is counted instead.
    assert not {"exception_nmi", "cr_access", "invlpg"} & set(mon["exits_by_reason"])
    assert mon["ept"]["tlb_misses"] > 0 and mon["ept"]["violations"] == 0


PAGING = ["ept", "shadow"]


@pytest.mark.parametrize("paging", PAGING)
def test_probe_sees_bare_hardware_except_cpuid(ringos, paging):
    result, out = run(ringos / "ringos.elf", "workload=probe", technique="hw", paging=paging)
    assert result.status == 0
    probes = {l.split()[1]: l for l in out if l.startswith("probe ")}
    visible = {name for name, l in probes.items() if l.endswith(" VISIBLE")}
    assert visible == {"cpuid_hypervisor_bit"}
    assert 'value="ringvisorVMM" max_leaf=0x40000000' in probes["cpuid_hypervisor_vendor"]
    assert all(l.endswith(" ok") for n, l in probes.items()
               if n not in ("cpuid_hypervisor_bit", "cpuid_hypervisor_vendor"))
    assert result.stats["monitor"]["exits_by_reason"]["cpuid"] >= 2


@pytest.mark.parametrize("paging", PAGING)
def test_tasks_are_preempted_and_isolated(ringos, paging):
    result, out = run(ringos / "ringos.elf", "workload=tasks iters=2", technique="hw", paging=paging)
    assert result.status == 0
    assert "tasks done: 4 tasks, 6 lines, 1 killed, preemptions>0 yes" in out
    assert any("killed: #PF page fault" in l and "err=0x7 cr2=00100000" in l for l in out)
    mon = result.stats["monitor"]
    assert mon["interrupts_injected"] > 0 and mon["exits_by_reason"]["hlt"] > 0
    assert result.stats["platform"]["timer_interrupts"] > 0


@pytest.mark.parametrize("paging", PAGING)
def test_nanobench_runs_every_benchmark(ringos, paging):
    result, out = run(ringos / "ringos.elf", "workload=nanobench iters=5", technique="hw", paging=paging)
    assert result.status == 0
    names = [l.split()[1] for l in out if l.startswith("nanobench ")]
    assert names == ["in", "cr", "call/ret", "pgfault", "divzero", "ptemod", "syscall"]
    by_reason = result.stats["monitor"]["exits_by_reason"]
    if paging == "ept":
        assert not {"exception_nmi", "cr_access", "invlpg", "monitor_trap_flag"} & set(by_reason)
    else:
        # First-generation VT-x: page faults, CR3 loads, INVLPG and page-table
        # writes (one instruction under the monitor trap flag) all exit.
        sp = result.stats["monitor"]["shadow_paging"]
        assert by_reason["exception_nmi"] >= sp["hidden_faults"] > 0
        assert by_reason["monitor_trap_flag"] == sp["pte_write_traps"] >= 5
        assert by_reason["invlpg"] == sp["invlpg"] > 0 and by_reason["cr_access"] > 0


def test_shadow_compute_matches_native(ringos, native_compute):
    result, out = run(ringos / "ringos.elf", "workload=compute iters=2", technique="hw",
                      paging="shadow")
    assert result.status == 0
    assert [l for l in out if l.startswith("compute ")] == native_compute
    assert result.stats["monitor"]["paging"] == "shadow"


def test_trace_shows_exits_with_decoded_qualification(ringos, tmp_path):
    import io
    from monitor_rig import machine
    from ringvisor.machine.trace import Trace
    m = machine(ringos / "ringos.elf", "workload=probe", technique="hw")
    buf = io.StringIO()
    m.attach_trace(Trace(buf, limit=100_000))
    try:
        assert m.run().status == 0
    finally:
        m.close()
    text = buf.getvalue()
    assert "vmexit cpuid" in text and "leaf 0x40000000" in text
    assert "vmexit io_instruction" in text and "out port 0x03f8 size 1" in text
    # The guest instruction that exited, disassembled, beside the reason.
    assert any(" out dx,al " in l for l in text.splitlines() if "vmexit io_instruction" in l)
    assert any(" cpuid " in l.split("vmexit cpuid")[1] for l in text.splitlines() if "vmexit cpuid" in l)
