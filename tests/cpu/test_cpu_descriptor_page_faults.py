"""A descriptor table on a not-present page faults with #PF, as on silicon:
the CPU reads descriptors through paging, and the page fault is reported,
not turned into the #GP/#TS the descriptor check would raise or into LAR's
ZF=0. Found running the differential programs under --paging shadow, where
the GDT's page is not in the shadow tables until first touched."""
from __future__ import annotations

from cpu_rig import CODE, GDT, Rig, needs_as

pytestmark = needs_as


def _rig(code: str, cpl: int = 0) -> Rig:
    rig = Rig()
    rig.identity_paging()
    rig.protected(code, cpl=cpl)
    rig.enable_paging()
    rig.set_pte(GDT, 0)                      # the GDT's page is not present
    rig.intercept(14)
    return rig


def test_lar_on_a_gdt_page_that_is_not_present():
    rig = _rig("mov ebx, 0x10\nlar eax, ebx")
    exit = rig.run()
    assert exit.vector == 14 and rig.cpu.cr2 == GDT + 0x10 and rig.cpu.eip == CODE + 5


def test_interrupt_gate_selector_on_a_gdt_page_that_is_not_present():
    rig = _rig("int 0x30")
    rig.set_idt(0x30, CODE + 0x100)
    exit = rig.run()
    assert exit.vector == 14 and rig.cpu.cr2 == GDT + 0x08


def test_inner_stack_descriptor_on_a_gdt_page_that_is_not_present():
    rig = _rig("int 0x30", cpl=3)
    rig.set_idt(0x30, CODE + 0x100, dpl=3)
    exit = rig.run()
    assert exit.vector == 14 and rig.cpu.cr2 in (GDT + 0x08, GDT + 0x10)
