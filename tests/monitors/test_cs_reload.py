"""A far jump to the same CS selector after LGDT changed its descriptor loads
the new descriptor (guests/tests/csreload.c): natively, and under every
monitor. The trap monitor used to keep the cache it had loaded before the
jump, because the trap frame's selector had not changed (issue 16)."""
from __future__ import annotations

import pytest

from monitor_rig import run

EXPECTED = "csreload: the new descriptor's limit is in force"


@pytest.mark.parametrize("technique,ring", [("native", 1), ("trap", 1), ("trap", 3), ("bt", 1)])
def test_far_jump_to_the_same_selector_reads_the_new_descriptor(test_kernels, technique, ring):
    result, out = run(test_kernels / "csreload.elf", technique=technique, ring=ring)
    assert EXPECTED in out, out
    assert result.status == 0


def test_the_trap_monitor_steps_only_until_the_far_jump(test_kernels):
    from monitor_rig import machine
    m = machine(test_kernels / "csreload.elf", technique="trap")
    try:
        result = m.run()
        kinds = m.engine.trap_kinds
    finally:
        m.close()
    assert result.status == 0
    assert kinds["#DB (monitor single-step)"] == 1      # the ljmp right after LGDT, no more
