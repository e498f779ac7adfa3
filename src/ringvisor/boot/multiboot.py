"""The Multiboot 1 loader (Multiboot Specification 0.6.96).

The kernel is an ELF (or a binary with the a.out kludge, header flag 16); it
is entered in 32-bit protected mode with paging off, flat segments, EAX =
0x2BADB002 and EBX = the physical address of the multiboot_info structure,
which carries the memory sizes, the memory map, the command line, the
modules and the boot loader's name.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ringvisor.boot import elf
from ringvisor.boot.layout import HIGH_RAM_START, LOW_RAM_END, Layout, align_up
from ringvisor.cpu_state import CpuState
from ringvisor.errors import GuestImageError

HEADER_MAGIC = 0x1BADB002
BOOTLOADER_MAGIC = 0x2BADB002
SEARCH_LIMIT = 8192

# Header flags (bits 0-15 are requirements a loader must meet or refuse).
PAGE_ALIGN, MEMORY_INFO, VIDEO_MODE, AOUT_KLUDGE = 1 << 0, 1 << 1, 1 << 2, 1 << 16
SUPPORTED_REQUIREMENTS = PAGE_ALIGN | MEMORY_INFO

# multiboot_info flags.
INFO_MEMORY, INFO_CMDLINE, INFO_MODS, INFO_MMAP, INFO_LOADER_NAME = 1 << 0, 1 << 2, 1 << 3, 1 << 6, 1 << 9
INFO_SIZE = 116
INFO_ADDRESS = 0x9000          # where the info block goes when the kernel leaves it free
INFO_LOW_START = 0x1000        # else the lowest free low memory above the real-mode IVT/BDA page
LOADER_NAME = b"ringvisor"


@dataclass(frozen=True)
class Header:
    offset: int
    flags: int
    header_addr: int = 0
    load_addr: int = 0
    load_end_addr: int = 0
    bss_end_addr: int = 0
    entry_addr: int = 0


@dataclass(frozen=True)
class Module:
    data: bytes
    cmdline: str


def find_header(data: bytes) -> Header | None:
    for off in range(0, min(len(data), SEARCH_LIMIT) - 11, 4):
        magic, flags, checksum = struct.unpack_from("<III", data, off)
        if magic == HEADER_MAGIC and (magic + flags + checksum) & 0xFFFFFFFF == 0:
            if flags & AOUT_KLUDGE:
                if off + 32 > len(data):
                    return None
                return Header(off, flags, *struct.unpack_from("<5I", data, off + 12))
            return Header(off, flags)
    return None


def _load_kernel(data: bytes, header: Header, name: str, memory, layout: Layout) -> int:
    """Copy the kernel's segments into memory; return its entry point."""
    if header.flags & AOUT_KLUDGE:
        h = header
        file_start = h.offset - (h.header_addr - h.load_addr)
        if h.header_addr < h.load_addr or file_start < 0:
            raise GuestImageError(f"{name}: multiboot address fields are inconsistent")
        load_end = h.load_end_addr or (h.load_addr + len(data) - file_start)
        bss_end = max(h.bss_end_addr, load_end)
        layout.claim(h.load_addr, bss_end - h.load_addr, f"kernel {name}")
        memory.write(h.load_addr, data[file_start:file_start + load_end - h.load_addr])
        memory.fill(load_end, bss_end - load_end)
        return h.entry_addr
    if not elf.is_elf(data):
        raise GuestImageError(f"{name}: multiboot header without address fields, and not an ELF")
    image = elf.parse_elf32(data, name)
    for i, seg in enumerate(image.segments):
        layout.claim(seg.paddr, seg.memsz, f"kernel {name} segment {i}")
        memory.write(seg.paddr, seg.data)
        memory.fill(seg.paddr + len(seg.data), seg.memsz - len(seg.data))
    return image.entry


class _InfoWriter:
    """The info block, then its strings and tables, in one area of low memory
    (or above the kernel and its modules when low memory is taken): placed
    where the kernel leaves room, once its size is known."""

    def __init__(self, memory, layout: Layout, size: int):
        self.memory = memory
        self.base = layout.find_free(size, (INFO_ADDRESS, INFO_LOW_START, layout.highest_end()))
        if self.base is None:
            raise GuestImageError("no room in guest RAM for the multiboot information "
                                  f"({size} bytes of command lines, memory map and module names)")
        layout.claim(self.base, size, "multiboot information")
        self.next, self.end = self.base + INFO_SIZE, self.base + size

    def put(self, blob: bytes) -> int:
        addr = align_up(self.next, 4)
        assert addr + len(blob) <= self.end, "the info area was sized before it was filled"
        self.memory.write(addr, blob)
        self.next = addr + len(blob)
        return addr


def _info_size(blobs: list[bytes]) -> int:
    return INFO_SIZE + sum(align_up(len(b), 4) for b in blobs) + 4


def load(data: bytes, name: str, memory, layout: Layout, cmdline: str = "",
         modules: tuple[Module, ...] = ()) -> CpuState:
    header = find_header(data)
    if header is None:
        raise GuestImageError(f"{name}: no Multiboot 1 header in its first 8 KiB")
    unsupported = header.flags & 0xFFFF & ~SUPPORTED_REQUIREMENTS
    if unsupported:
        what = "a video mode" if unsupported & VIDEO_MODE else f"flags {unsupported:#x}"
        raise GuestImageError(f"{name}: the kernel requires {what}, which ringvisor does not provide")
    entry = _load_kernel(data, header, name, memory, layout)

    placed = []                                  # (address, end, command line) of each module
    where = align_up(layout.highest_end())
    for i, mod in enumerate(modules):
        layout.claim(where, max(len(mod.data), 1), f"module {i} ({mod.cmdline.split()[0] if mod.cmdline else i})")
        memory.write(where, mod.data)
        placed.append((where, where + len(mod.data), mod.cmdline.encode() + b"\0"))
        where = align_up(where + len(mod.data))

    command_line = f"{name} {cmdline}".strip().encode() + b"\0"
    mmap = b"".join(struct.pack("<IQQI", 20, base, length, kind)
                    for base, length, kind in layout.memory_map())
    strings = [command_line, LOADER_NAME + b"\0", mmap] + [c for _, _, c in placed]
    info = _InfoWriter(memory, layout, _info_size(strings + [bytes(16 * len(placed))]))
    flags = INFO_MEMORY | INFO_CMDLINE | INFO_MMAP | INFO_LOADER_NAME
    cmdline_addr = info.put(command_line)
    loader_addr = info.put(LOADER_NAME + b"\0")
    mmap_addr = info.put(mmap)

    mods_addr = 0
    if modules:
        flags |= INFO_MODS
        table = [struct.pack("<IIII", start, end, info.put(cmd), 0) for start, end, cmd in placed]
        mods_addr = info.put(b"".join(table))

    usable_high = layout.usable_end - HIGH_RAM_START
    fields = struct.pack("<IIIIIII", flags, LOW_RAM_END // 1024, usable_high // 1024, 0,
                         cmdline_addr, len(modules), mods_addr)
    base = info.base
    memory.fill(base, INFO_SIZE)
    memory.write(base, fields)
    memory.write(base + 44, struct.pack("<II", len(mmap), mmap_addr))
    memory.write(base + 64, struct.pack("<I", loader_addr))
    return CpuState.protected_flat(entry, eax=BOOTLOADER_MAGIC, ebx=base)

