"""Hardware task switches under the hw monitor (monitors/hw/task.py): every
task switch exits in VMX non-root operation and the monitor emulates it
with the soft CPU's own task-switch semantics. Flat guests with their own
GDT (code 0x08, data 0x10, TSS A 0x18, TSS B 0x20) and IDT; task B's code
ends the run with `out %al, $0xf4`. The same guests run natively for the
reference."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from monitor_rig import FLAT_GDT, FLAT_START, run as run_guest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cpu"))   # the CPU tests' assembler
from cpu_rig import asm, needs_as  # noqa: E402

pytestmark = needs_as
TECHNIQUES = [("native", "ept"), ("hw", "ept"), ("hw", "shadow")]

GUEST = """
.set TSS_B, 0x181000
""" + FLAT_START + """    mov fs, ax
    mov gs, ax
    mov edi, TSS_B
    mov dword ptr [edi + 0x20], offset task_b
    mov dword ptr [edi + 0x24], 2
    mov dword ptr [edi + 0x38], 0x160000
    mov dword ptr [edi + 0x48], 0x10
    mov dword ptr [edi + 0x4c], 0x08
    mov dword ptr [edi + 0x50], 0x10
    mov dword ptr [edi + 0x54], 0x10
    mov dword ptr [edi + 0x58], 0x10
    mov dword ptr [edi + 0x5c], 0x10
    mov ax, 0x18
    ltr ax
    clts
{task_a}
task_b:
{task_b}
    out 0xf4, al
    hlt
""" + FLAT_GDT + """    .quad 0x0000891800000067
    .quad 0x0000891810000067
gdtr:
    .word 5 * 8 - 1
    .long gdt
.align 8
idt:
    .fill 8, 8, 0
    .quad 0x0000850000200000
    .fill 5, 8, 0
idtr:
    .word 14 * 8 - 1
    .long idt
"""


def run(tmp_path, technique, paging, task_a, task_b):
    image = tmp_path / "guest.bin"
    image.write_bytes(asm(GUEST.format(task_a=task_a, task_b=task_b), org=0x100000))
    result, lines = run_guest(image, technique=technique, paging=paging, image_format="flat")
    return result


@pytest.mark.parametrize("technique,paging", TECHNIQUES)
def test_double_fault_through_its_task_gate(tmp_path, technique, paging):
    # #GP (a selector past the GDT) meets a not-present #GP gate: a double
    # fault, delivered through the task gate to task B as Linux's #DF task.
    result = run(tmp_path, technique, paging,
                 "    mov ax, 0x1234\n    mov ds, ax\n    hlt",
                 "    pop ebx\n"                           # the #DF's error code: 0
                 "    mov eax, [TSS_B]\n"                  # back link: task A (0x18)
                 "    add eax, ebx\n"
                 "    mov ecx, cr0\n    and ecx, 8\n    add eax, ecx\n"   # CR0.TS set by the switch
                 "    pushfd\n    pop ecx\n    shr ecx, 14\n    and ecx, 1\n    add eax, ecx")  # NT
    assert result.status == 0x18 + 8 + 1
    if technique == "hw":
        assert result.stats["monitor"]["task_switches_emulated"] == {"task gate": 1}
        assert result.stats["monitor"]["exits_by_reason"]["task_switch"] == 1


@pytest.mark.parametrize("technique,paging", TECHNIQUES)
def test_call_to_a_task_and_iret_back(tmp_path, technique, paging):
    result = run(tmp_path, technique, paging,
                 "    mov ebx, 7\n    .byte 0x9A\n    .long 0\n    .word 0x20\n"   # call 0x20:0
                 "    mov eax, [0x150000]\n    add eax, ebx\n    out 0xf4, al\n    hlt",
                 "    mov dword ptr [0x150000], 0x40\n    iretd\n    hlt")
    assert result.status == 0x47
    if technique == "hw":
        assert result.stats["monitor"]["task_switches_emulated"] == {"call": 1, "iret": 1}


PAGING_ON = """
    mov dword ptr [0x400000], 0x11
    mov dword ptr [0x800000], 0x22
    mov edi, 0x190000                  # PD A: 4 MiB pages, identity over 16 MiB
    mov esi, 0x191000                  # PD B: the same, but 0x400000 -> 0x800000
    xor ecx, ecx
1:  mov eax, ecx
    shl eax, 22
    or eax, 0x83
    mov [edi + 4 * ecx], eax
    mov [esi + 4 * ecx], eax
    inc ecx
    cmp ecx, 4
    jne 1b
    mov dword ptr [esi + 4], 0x800083
    mov dword ptr [TSS_B + 0x1c], 0x191000
    mov eax, cr4
    or eax, 0x10
    mov cr4, eax
    mov cr3, edi
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
"""


@pytest.mark.parametrize("technique,paging", TECHNIQUES)
def test_a_task_switch_to_another_address_space_flushes_the_tlb(tmp_path, technique, paging):
    # Task A reads linear 0x400000 (its TLB now maps it to 0x400000), then
    # calls task B, whose CR3 maps it to 0x800000. Regression: under EPT the
    # emulated switch left the guest's VPID-tagged translations in place and
    # task B read task A's page.
    result = run(tmp_path, technique, paging,
                 PAGING_ON + "    mov eax, [0x400000]\n    .byte 0x9A\n    .long 0\n    .word 0x20\n"
                 "    hlt",
                 "    mov eax, [0x400000]")
    assert result.status == 0x22
