"""Enlightenments (docs/hw-abi.md): ringos with enlighten=1 finds ringvisor's
hypercalls under the hw monitor and uses them for console output and, under
shadow paging, for a page-table store with its flush; the output is the
same, the exits fewer. Elsewhere the option finds nothing and changes nothing."""
from __future__ import annotations

import pytest

from monitor_rig import run


def _body(out):
    return [l for l in out if l.startswith(("nanobench ", "compute ", "tasks done", "ringos: exit"))]


@pytest.mark.parametrize("paging", ["shadow", "ept"])
def test_enlightened_guest_prints_the_same_with_fewer_exits(ringos, paging):
    plain, plain_out = run(ringos / "ringos.elf", "workload=nanobench iters=20", technique="hw",
                           paging=paging)
    result, out = run(ringos / "ringos.elf", "workload=nanobench iters=20 enlighten=1",
                      technique="hw", paging=paging)
    assert result.status == 0 and [l.split()[1] for l in _body(out)[:-1]] == \
        [l.split()[1] for l in _body(plain_out)[:-1]]
    features = "console mmu" if paging == "shadow" else "console"
    assert f"ringos: enlightened: ringvisor hypercalls: {features}" in out
    mon, before = result.stats["monitor"], plain.stats["monitor"]
    calls = mon["hypercalls"]
    assert calls["version"] == 1 and calls["console_write"] > 0
    # The console no longer writes the UART byte by byte.
    assert mon["io_exits_by_port"].get("0x03f8", 0) < before["io_exits_by_port"]["0x03f8"] // 4
    if paging == "shadow":
        # ptemod: one hypercall per PTE store + flush, instead of #PF, MTF and INVLPG.
        assert calls["set_pte_flush"] >= 20
        assert mon["exits_by_reason"].get("invlpg", 0) < before["exits_by_reason"]["invlpg"]
    else:
        assert "set_pte_flush" not in calls          # nothing to save under nested paging
    assert mon["exits"] < before["exits"]


def test_without_ringvisor_hypercalls_the_option_changes_nothing(ringos):
    result, out = run(ringos / "ringos.elf", "workload=compute iters=2 enlighten=1",
                      technique="native")
    assert result.status == 0 and "ringos: enlighten=1: no ringvisor hypervisor here" in out
    assert "compute checksum=33d3eddd instructions=241350" in out
