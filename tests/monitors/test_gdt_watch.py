"""Descriptors the guest writes after LGDT reach the real GDT before the
guest loads them (guests/tests/gdtwrite.c; Linux's TLS slots died with
#GP(0x30) in user space before the GDT's frames were watched)."""
from __future__ import annotations

import pytest

from monitor_rig import run

CASES = [("trap", 1), ("trap", 3), ("bt", 1)]


@pytest.mark.parametrize("technique,ring", CASES)
def test_a_descriptor_written_after_lgdt_is_the_one_loaded(test_kernels, technique, ring):
    result, out = run(test_kernels / "gdtwrite.elf", technique=technique, ring=ring)
    assert "gdtwrite: fs read 0x11111111 then 0x22222222" in out and result.status == 0
    mon = result.stats["monitor"]
    # Two descriptors, each written as two dword stores (one step each).
    assert mon["descriptors_updated"] >= 2 and mon["gdt_write_steps"] >= 4


def test_natively_too(test_kernels):
    from ringvisor.vm import VmConfig, build_machine
    out = bytearray()
    m = build_machine(VmConfig(kernel=str(test_kernels / "gdtwrite.elf"), engine="soft",
                               technique="native", timeout=60), out.extend)
    try:
        assert m.run().status == 0
    finally:
        m.close()
    assert b"fs read 0x11111111 then 0x22222222" in out
