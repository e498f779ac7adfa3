"""What Linux's segments need from the trap and bt monitors: descriptors
written after LGDT reach the real GDT before the guest loads them
(guests/tests/gdtwrite.c; Linux's TLS slots died with #GP(0x30) in user
space before the GDT's frames were watched), and offsets that wrap around
4 GiB pass the limit the monitor cut (guests/tests/segwrap.c; glibc's TLS)."""
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


@pytest.mark.parametrize("technique,ring", CASES)
def test_an_offset_wrapping_around_4_gib_passes_the_cut_limit(test_kernels, technique, ring):
    # glibc's TLS reads %gs:0xffffffac: legal with the guest's 4 GiB limit,
    # beyond the limit the monitor cut (busybox's init died of it under bt).
    # An offset beyond the segment's own limit stays the guest's #GP.
    result, out = run(test_kernels / "segwrap.elf", technique=technique, ring=ring)
    assert out[-2:] == ["segwrap: fs:-4 read 0x5eed5eed", "segwrap: #GP beyond the segment's own limit"]
    assert result.status == 0 and result.stats["monitor"]["cut_limit_steps"] == 1
