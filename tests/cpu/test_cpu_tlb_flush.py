"""A CR3 load with CR4.PGE keeps the global translations and drops the
others (SDM vol. 3 4.10.4.1); the block cache then forgets only what it
derived from the dropped pages (compiled-code lookups, fast memory pages).
Two address spaces map the same linear code and data pages to different
physical pages while the loop that switches between them sits on a global
page: compiled and interpreted runs must both see the switch every time."""
from __future__ import annotations

import struct

import pytest

from cpu_rig import PD, Rig, asm, needs_as

PD2 = 0x20000                   # the second address space: a copy of the first
FUNC, DATA = 0x300000, 0x302000  # linear pages that differ between the two
OTHER = 0x10000                 # the second space maps them this much higher

MAIN = f"""
top:
    call {FUNC:#x}
    add ebx, eax
    add esi, [{DATA:#x}]
    mov eax, {PD2:#x}
    mov cr3, eax
    call {FUNC:#x}
    add ebx, eax
    add esi, [{DATA:#x}]
    mov eax, {PD:#x}
    mov cr3, eax
    dec ebp
    jnz top
    hlt
"""


def run(blocks: bool, pge: bool):
    rig = Rig()
    rig.protected(asm(MAIN), ebp=20)
    rig.identity_paging()
    g = 0x100 if pge else 0
    pt = PD + 0x1000
    for i in range(1024):                   # every page global but the two that differ
        if (i << 12) not in (FUNC, DATA):
            rig.mem.write_u32(pt + 4 * i, (i << 12) | 7 | g)
    pt2 = PD2 + 0x1000
    rig.write(PD2, struct.pack("<I", pt2 | 7))
    rig.write(pt2, rig.mem.read(pt, 0x1000))
    for lin in (FUNC, DATA):
        rig.mem.write_u32(pt2 + 4 * (lin >> 12), (lin + OTHER) | 7)
    rig.write(FUNC, asm("mov eax, 1\nret", org=FUNC))
    rig.write(FUNC + OTHER, asm("mov eax, 2\nret", org=FUNC + OTHER))
    rig.mem.write_u32(DATA, 0x11)
    rig.mem.write_u32(DATA + OTHER, 0x2200)
    rig.enable_paging(cr4=0x80 if pge else 0)
    rig.cpu.use_blocks = blocks
    rig.run(100_000)
    return rig.cpu.r[3], rig.cpu.r[6], rig.cpu.instructions


@needs_as
@pytest.mark.parametrize("pge", [False, True])
def test_cr3_load_switches_code_and_data_of_non_global_pages(pge):
    compiled, interpreted = run(True, pge), run(False, pge)
    assert compiled == interpreted
    assert compiled[:2] == (20 * 3, 20 * 0x2211)
