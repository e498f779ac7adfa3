"""A tiny firmware ROM of our own, assembled with GNU as at test time: the
reset vector at F000:FFF0 writes POST code 0x01 (fetched through the high
alias, CS.base FFFF0000), far-jumps to F000:0000 (CS.base F0000, the low
copy), writes 0x11 and 0x12, enters 32-bit protected mode, writes 0x13,
prints a line on COM1, writes 0x14 and ends in cli; hlt."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cpu"))   # the CPU tests' assembler
from cpu_rig import HAVE_AS, asm, needs_as  # noqa: E402,F401

BANNER = b"ringvisor test ROM: protected mode\r\n"
POST_CODES = [0x01, 0x11, 0x12, 0x13, 0x14]
LOW_BASE = 0xF0000                 # where a 64 KiB ROM appears below 1 MiB
SIZE = 64 << 10

SOURCE = f"""
post:                                   # F000:0000, reached by the far jump
    mov al, 0x11
    out 0x80, al
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7000
    mov al, 0x12
    out 0x80, al
    lgdt cs:[gdt_pointer]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    .byte 0x66, 0xEA                    # jmp far dword 0x08:pm32
    .long {LOW_BASE:#x} + pm32
    .word 0x08
.code32
pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x7000
    mov al, 0x13
    out 0x80, al
    mov esi, offset banner
    add esi, {LOW_BASE:#x}
next:
    mov bl, [esi]
    test bl, bl
    jz done
wait_thre:
    mov dx, 0x3FD
    in al, dx
    test al, 0x20
    jz wait_thre
    mov dx, 0x3F8
    mov al, bl
    out dx, al
    inc esi
    jmp next
done:
    mov al, 0x14
    out 0x80, al
    cli
    hlt
    jmp done
banner:
    .ascii "{BANNER.decode().replace(chr(13), '').replace(chr(10), '')}\\r\\n\\0"
    .balign 8
gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF            # 0x08: flat 32-bit code
    .quad 0x00CF92000000FFFF            # 0x10: flat 32-bit data
gdt_pointer:
    .word 23
    .long {LOW_BASE:#x} + gdt
.code16
    .org 0xFFF0
reset_vector:                           # F000:FFF0 = physical FFFFFFF0
    mov al, 0x01
    out 0x80, al
    .byte 0xEA                          # jmp far 0xF000:post
    .word post
    .word 0xF000
    .org 0x10000, 0xFF
"""


def test_rom() -> bytes:
    image = asm(SOURCE, org=0, bits=16)
    assert len(image) == SIZE, len(image)
    return image


test_rom.__test__ = False        # a builder, not a test
