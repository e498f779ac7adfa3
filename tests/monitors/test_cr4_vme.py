"""CR4.VME and CR4.PVI exist on this CPU (CPUID.1:EDX.VME; cpu/semantics/
vme.py), so MOV to CR4 setting either is accepted natively and under every
monitor's emulation of MOV to CR4 (trap and bt keep them in the virtual CPU
and do their rules in their v86 emulation; hw with EPT and with shadow
paging, where a write that also changes PSE exits to the monitor, passes
them to the guest's CR4); a reserved bit (bit 5, PAE, which CPUID does not
report) is #GP(0) everywhere."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from monitor_rig import FLAT_GDT, FLAT_START, run as run_guest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cpu"))   # the CPU tests' assembler
from cpu_rig import asm, needs_as  # noqa: E402

pytestmark = needs_as

GUEST = """
start:                         # at 0x100000
""" + FLAT_START + """    mov eax, cr4
    or eax, {bits}
    mov cr4, eax
    mov al, 0                  # no fault: exit status 0
    out 0xf4, al
    hlt
gp:
    mov al, 13                 # #GP: exit status 13
    out 0xf4, al
    hlt
""" + FLAT_GDT + """gdtr:
    .word 3 * 8 - 1
    .long gdt
.align 8
idt:
    .fill 13, 8, 0
    .word gp - start, 0x08, 0x8E00, 0x0010        # #GP: interrupt gate to 0x08:gp
idtr:
    .word 14 * 8 - 1
    .long idt
"""

TECHNIQUES = [("native", 1, "ept"), ("trap", 1, "ept"), ("trap", 3, "ept"), ("bt", 1, "ept"),
              ("hw", 1, "ept"), ("hw", 1, "shadow")]


@pytest.mark.parametrize("bits,status", [("0x1", 0), ("0x2", 0), ("0x11", 0), ("0x10", 0),
                                         ("0x20", 13), ("0x31", 13)],
                         ids=["VME", "PVI", "VME+PSE", "PSE", "PAE", "PAE+VME+PSE"])
@pytest.mark.parametrize("technique,ring,paging", TECHNIQUES)
def test_mov_to_cr4_with_vme_or_pvi_is_accepted(tmp_path, technique, ring, paging, bits, status):
    image = tmp_path / "guest.bin"
    image.write_bytes(asm(GUEST.format(bits=bits), org=0x100000))
    result, _ = run_guest(image, technique=technique, ring=ring, paging=paging, image_format="flat")
    assert result.status == status


# --- PVI at CPL 3 (SDM 20.4): CLI/STI change VIF, under every monitor as natively ---------------
PVI_GUEST = """
start:                         # at 0x100000
    mov eax, OFFSET tss        # the TSS descriptor (0x28), built here
    mov word ptr [gdt + 0x2A], ax
    shr eax, 16
    mov byte ptr [gdt + 0x2C], al
    mov byte ptr [gdt + 0x2F], ah
""" + FLAT_START + """    mov ax, 0x28
    ltr ax
    mov eax, cr4
    or eax, {cr4}
    mov cr4, eax
    push 0x23                  # IRET to ring 3, IOPL 0, IF clear, VIF set
    push 0x180000
    push 0x80002
    push 0x1B
    push OFFSET user
    iretd
user:
    cli
    pushfd
    pop eax
    sti
    pushfd
    pop ebx
    int 0x40
gp:
    mov al, 13                 # #GP: exit status 13
    out 0xf4, al
    hlt
report:                        # INT 0x40: 0x40 | VIF after CLI, after STI (1, 2), IF (4, 8)
    mov ecx, eax
    shr ecx, 19
    and ecx, 1
    mov edx, ebx
    shr edx, 18
    and edx, 2
    or ecx, edx
    mov edx, eax
    shr edx, 7
    and edx, 4
    or ecx, edx
    mov edx, ebx
    shr edx, 6
    and edx, 8
    or ecx, edx
    or ecx, 0x40
    mov al, cl
    out 0xf4, al
    hlt
""" + FLAT_GDT + """    .quad 0x00CFFA000000FFFF
    .quad 0x00CFF2000000FFFF
    .quad 0x0000890000000067
gdtr:
    .word 6 * 8 - 1
    .long gdt
.align 8
idt:
    .fill 13, 8, 0
    .word gp - start, 0x08, 0x8E00, 0x0010        # #GP: interrupt gate to 0x08:gp
    .fill 0x40 - 14, 8, 0
    .word report - start, 0x08, 0xEE00, 0x0010    # INT 0x40: DPL 3
idtr:
    .word 0x41 * 8 - 1
    .long idt
.align 16
tss:
    .long 0, 0x170000, 0x10
    .fill 23, 4, 0
"""


@pytest.mark.parametrize("cr4,status", [("0x2", 0x42), ("0x0", 13)], ids=["PVI", "no-PVI"])
@pytest.mark.parametrize("technique,ring,paging", TECHNIQUES)
def test_pvi_cli_sti_at_cpl3(tmp_path, technique, ring, paging, cr4, status):
    image = tmp_path / "guest.bin"
    image.write_bytes(asm(PVI_GUEST.format(cr4=cr4), org=0x100000))
    result, _ = run_guest(image, technique=technique, ring=ring, paging=paging, image_format="flat")
    assert result.status == status
