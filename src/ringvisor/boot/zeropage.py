"""struct boot_params, the "zero page" a boot loader hands the kernel
(arch/x86/include/uapi/asm/bootparam.h; Documentation/arch/x86/zero-page.rst).

ringvisor fills what a 32-bit boot loader must: the setup header copied
from the image with the loader's fields set, the e820 memory map, and a
zeroed screen_info (no video mode was set; the console is the serial port).
"""
from __future__ import annotations

import struct

SIZE = 4096
# Offsets in boot_params (zero-page.rst).
SCREEN_INFO, SCREEN_INFO_SIZE = 0x000, 0x40
EXT_RAMDISK_IMAGE, EXT_RAMDISK_SIZE, EXT_CMD_LINE_PTR = 0x0C0, 0x0C4, 0x0C8
ALT_MEM_K = 0x1E0
E820_ENTRIES = 0x1E8
SENTINEL = 0x1EF
SETUP_HEADER = 0x1F1
E820_TABLE = 0x2D0
E820_MAX_ENTRIES = 128
E820_ENTRY = struct.Struct("<QQI")

# Setup header fields a loader writes (offsets inside boot_params, as in the image).
TYPE_OF_LOADER, LOADFLAGS = 0x210, 0x211
VID_MODE = 0x1FA
RAMDISK_IMAGE, RAMDISK_SIZE = 0x218, 0x21C
CMD_LINE_PTR = 0x228
HARDWARE_SUBARCH = 0x23C

LOADER_UNDEFINED = 0xFF           # boot.rst: a loader without an assigned id writes 0xFF
VID_MODE_NORMAL = 0xFFFF          # "normal" 80x25 text, no mode change asked for
# loadflags bits a loader clears: QUIET_FLAG (5), KEEP_SEGMENTS (6, obsolete), CAN_USE_HEAP (7:
# the heap is for the real-mode setup code, which the 32-bit protocol skips).
LOADFLAGS_CLEARED = 0x20 | 0x40 | 0x80
SUBARCH_PC = 0


def build(setup_header: bytes, cmd_line_ptr: int, e820: list[tuple[int, int, int]],
          ramdisk: tuple[int, int] = (0, 0)) -> bytes:
    """The 4 KiB boot_params for `setup_header` (the image's bytes from
    0x1F1), with the command line at `cmd_line_ptr`, the memory map `e820`
    as (base, length, type) and the initrd as (address, size)."""
    if len(e820) > E820_MAX_ENTRIES:
        raise ValueError(f"{len(e820)} e820 entries; boot_params holds {E820_MAX_ENTRIES}")
    bp = bytearray(SIZE)
    bp[SETUP_HEADER:SETUP_HEADER + len(setup_header)] = setup_header
    bp[TYPE_OF_LOADER] = LOADER_UNDEFINED
    bp[LOADFLAGS] &= ~LOADFLAGS_CLEARED & 0xFF
    struct.pack_into("<H", bp, VID_MODE, VID_MODE_NORMAL)
    struct.pack_into("<II", bp, RAMDISK_IMAGE, *ramdisk)
    struct.pack_into("<I", bp, CMD_LINE_PTR, cmd_line_ptr)
    struct.pack_into("<I", bp, HARDWARE_SUBARCH, SUBARCH_PC)
    above_1m = sum(length for base, length, kind in e820 if kind == 1 and base >= 0x100000)
    struct.pack_into("<I", bp, ALT_MEM_K, above_1m // 1024)
    bp[E820_ENTRIES] = len(e820)
    for i, entry in enumerate(e820):
        E820_ENTRY.pack_into(bp, E820_TABLE + i * E820_ENTRY.size, *entry)
    return bytes(bp)


def e820_of(bp: bytes) -> list[tuple[int, int, int]]:
    """The memory map in a boot_params (for reports and tests)."""
    return [E820_ENTRY.unpack_from(bp, E820_TABLE + i * E820_ENTRY.size) for i in range(bp[E820_ENTRIES])]
