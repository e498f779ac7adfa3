"""Adaptive translation of page-table stores: kernel code storing into its
own (traced) page table, run natively at CPL 0 and under bt with paging on
(the difftest world: one identity page table at PT, so PT itself is
traced). A store that trapped once becomes a "pte store" callout: one trap
per store, no single-step, the shadows mirrored (what a load through the
remapped page reads), and the guest's own faults on such a store (a
read-only segment, a read-only page-table page with CR0.WP=1) unchanged.
Store forms bt does not perform (XCHG, CMPXCHG, OR, REP STOS, a store split
across pages) still run exactly, on the old path."""
from __future__ import annotations

import struct

import pytest

from ringvisor.difftest.compare import differences
from ringvisor.difftest.program import Case, Program
from ringvisor.difftest.runners import SoftRunner
from ringvisor.difftest.world import CODE, PT, terminator
from ringvisor.monitors.bt.adaptive import MISS_LIMIT, PTE_STORE
from bt_difftest_rig import BtRunner

REWRITTEN = ("ds cache", "es cache", "fs cache", "gs cache", "gdt")
LIN = 0x50000                     # the page whose PTE the programs rewrite
PTE = PT + 4 * (LIN >> 12)
STEP = "#DB (monitor single-step)"


def imm(v: int) -> bytes:
    return struct.pack("<I", v)


def markers(n: int) -> bytes:
    """mov dword [0x60000 + 0x1000 * i], 0x11111111 * (i + 1): one frame each."""
    return b"".join(b"\xc7\x05" + imm(0x60000 + 0x1000 * i) + imm(0x11111111 * (i + 1)) for i in range(n))


READ_BACK = b"\x0f\x01\x3f" + b"\x03\x2f" + b"\xc1\xc5\x04"      # invlpg [edi]; add ebp, [edi]; rol ebp, 4
SETUP = b"\xbe" + imm(PTE) + b"\xbf" + imm(LIN) + b"\x31\xed" + b"\x8b\x07"   # esi, edi; ebp = 0; touch LIN


def loop(body: bytes, count: int) -> bytes:
    """mov ecx, count; body; dec ecx; jnz body."""
    rel = -(len(body) + 3)
    return b"\xb9" + imm(count) + body + b"\x49\x75" + struct.pack("<b", rel)


def run_both(code: bytes):
    """(native outcome, bt outcome, differences, the bt monitor, native CR2, bt CR2)."""
    full = code + terminator(0)
    program = Program(cpl=0, code=full, end_eip=CODE + len(code), listing=[], undefined_at={},
                      undefined_end=0)
    case = Case(cpl=0, eflags=0x2, regs={}, seed=7, nodes=(), norm=None)
    soft, bt = SoftRunner(paging=True), BtRunner(paging=True)
    try:
        native, translated = soft.run(case, program), bt.run(case, program)
        cr2 = soft.cpu.cr2, bt.monitor.vcpu.cr2
    finally:
        soft.close()
        bt.close()
    diffs = [d for d in differences(native, translated, program) if not d.startswith(REWRITTEN)]
    return native, translated, diffs, bt.monitor, cr2


def test_a_retranslated_pte_store_takes_one_trap_and_is_mirrored():
    # mov [esi], edx alternates the PTE of LIN between two frames, each read back through LIN.
    body = b"\x89\x16" + READ_BACK + b"\x81\xf2" + imm(0x1000)      # ...; xor edx, 0x1000
    code = markers(2) + SETUP + b"\xba" + imm(0x60007) + loop(body, 6) + \
        b"\xc7\x46\x04" + imm(0x61007)                                 # mov dword [esi+4], imm32 once
    native, bt, diffs, mon, _ = run_both(code)
    assert native.event == "end" and not diffs, diffs
    assert native.regs[5] != 0                        # EBP: what the loads through LIN saw
    b = mon.bt
    assert b.adaptive == 2                            # the MOV r/m32,r32 and the MOV r/m32,imm32
    assert b.callouts[PTE_STORE] == 5                 # the first of 6 stores was the #PF that adapted
    assert b.pte_stores == 7 and b.pte_store_steps == 0
    assert mon.trap_kinds[STEP] == 0 and mon.stats["pte_write_traps"] == 0      # none let through by a step
    assert mon.stats["pte_writes_mirrored"] == 7


@pytest.mark.parametrize("setup, vector, code, cr2", [
    # the second time round ES is a read-only data segment: #GP(0) at the callout
    (b"", 13, 0, None),
    # the second time round the page table's own page is read-only and CR0.WP=1: #PF(P|W)
    (b"\x0f\x20\xc0" + b"\x0d" + imm(0x10000) + b"\x0f\x22\xc0", 14, 3, PTE),
], ids=["read-only segment", "read-only page-table page"])
def test_a_retranslated_pte_store_raises_the_guests_own_fault(setup, vector, code, cr2):
    if vector == 13:
        body = b"\x26\x89\x16" + b"\x66\xb8\x50\x00\x8e\xc0"                   # es: mov [esi], edx; es = 0x50
    else:
        body = b"\x89\x16" + b"\x81\x25" + imm(PT + 4 * (PT >> 12)) + imm(0xFFFFFFFD) + \
            b"\x0f\x01\x3d" + imm(PT)                                           # its PTE loses RW; invlpg
    native, bt, diffs, mon, cr2s = run_both(setup + SETUP + b"\xba" + imm(0x60007) + loop(body, 2))
    assert (native.event, native.vector, native.error_code) == ("exception", vector, code)
    assert not diffs, diffs
    assert mon.bt.adaptive == 1 and mon.bt.callouts[PTE_STORE] == 1     # the faulting one was a callout
    if cr2 is not None:
        assert cr2s == (cr2, cr2)


def test_store_forms_bt_does_not_perform_stay_exact():
    # Each store remaps LIN to the next marker frame; every mapping is read back.
    stores = [
        b"\xba" + imm(0x61007) + b"\x87\x16",                              # xchg [esi], edx
        b"\x8b\x06" + b"\xba" + imm(0x62007) + b"\x0f\xb1\x16",            # cmpxchg [esi], edx
        b"\x81\x0e" + imm(0x1000),                                         # or dword [esi], 0x1000
        b"\xb8" + imm(0x64007) + b"\xb9" + imm(2) + b"\x89\xf7" +         # eax, ecx = 2, edi = esi
        b"\xf3\xab" + b"\xbf" + imm(LIN),                                   # rep stosd; edi = LIN
        b"\xc6\x46\x02\x06",                                               # mov byte [esi+2], 6 (performed)
        b"\x66\xc7\x46\x02\x05\x00",                                       # mov word [esi+2], 5 (performed)
    ]
    # mov [ebx], edx across the directory's end into PT[0], twice: both halves traced
    split = b"\xbb" + imm(PT - 2) + loop(b"\x89\x13", 2)
    code = markers(5) + SETUP + b"".join(s + READ_BACK for s in stores) + split + \
        b"\x8b\x1e" + b"\x8b\x56\x04" + b"\x8b\x3d" + imm(PT)           # ebx, edx, edi = PTEs
    native, bt, diffs, mon, _ = run_both(code)
    assert native.event == "end" and not diffs, diffs
    b = mon.bt
    assert b.adaptive == 3                            # the MOV byte, the MOV word, the split MOV
    assert b.pte_store_steps == 2                     # the split one, single-stepped from the guest's code
    assert mon.trap_kinds[STEP] >= 4 + 2              # XCHG, CMPXCHG, OR, REP STOS x2: the old path


def test_a_site_that_stores_elsewhere_goes_back_to_being_copied_until_it_traps_again():
    # The same MOV stores to the page table, then 8 times to the data area, then
    # to the page table again: esi = PTE for the last iteration, else data.
    body = b"\x89\x16" + b"\x83\xf9\x02" + b"\xbe" + imm(0xA100) + b"\x75\x05" + b"\xbe" + imm(PTE)
    native, bt, diffs, mon, _ = run_both(SETUP + b"\xba" + imm(0x60007) + loop(body, 10))
    assert native.event == "end" and not diffs, diffs
    b = mon.bt
    assert b.unadapted == 1 and b.unadapt_drops == 0      # the callout patched back to the copy
    assert b.callouts[PTE_STORE] == MISS_LIMIT            # the data stores; then copied, no trap
    assert b.adaptive == 2 and b.pte_stores == MISS_LIMIT + 2     # the last store: a #PF, adapted again
