"""A PV kernel image and its start of day (docs/pv-abi.md sections 1, 2, 4).

The ELF must carry the note "ringvisor"/type 1 naming ABI major version 1;
the monitor loads its PT_LOAD segments at p_paddr and lays out after the
highest one, frame by frame: start_info, shared_info, the boot page
directory, its page tables, and the boot stack. The boot tables map all of
the guest's RAM at virtual == guest-physical, supervisor, writable, except
the tables themselves and start_info (read-only); they are pinned through
DirectPaging like any table the guest builds, so the monitor's own start
state passes the same validation.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from ringvisor.boot import elf
from ringvisor.boot.image import read_file
from ringvisor.errors import GuestImageError
from ringvisor.monitors.pv import abi as A
from ringvisor.monitors.pv.mmu import ENTRIES, PAGE, P, W, DirectPaging

PT_NOTE = 4
BOOT_STACK_FRAMES = 2


@dataclass(frozen=True)
class PvImage:
    name: str
    entry: int
    version: int
    image: elf.ElfImage


@dataclass(frozen=True)
class StartOfDay:
    start_info: int          # guest-physical (== virtual) addresses
    shared_info: int
    pt_base: int
    nr_pt_frames: int
    first_free_pfn: int
    stack_top: int


def _notes(data: bytes):
    """(name, type, descriptor) of every note in the PT_NOTE segments."""
    phoff, = struct.unpack_from("<I", data, 28)
    phentsize, phnum = struct.unpack_from("<HH", data, 42)
    for i in range(phnum):
        p_type, off, _v, _p, filesz, *_ = struct.unpack_from("<IIIIII", data, phoff + i * phentsize)
        if p_type != PT_NOTE:
            continue
        end = min(off + filesz, len(data))
        while off + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", data, off)
            name_at = off + 12
            desc_at = name_at + (namesz + 3) // 4 * 4
            off = desc_at + (descsz + 3) // 4 * 4
            if off > end:
                break
            yield data[name_at:name_at + namesz].rstrip(b"\0"), ntype, data[desc_at:desc_at + descsz]


def read_image(path: str) -> PvImage:
    """The kernel file, checked for the PV note (GuestImageError if absent)."""
    data = read_file(path)
    name = os.path.basename(path)
    image = elf.parse_elf32(data, name)          # ELF32, i386, executable, PT_LOADs
    for note_name, ntype, desc in _notes(data):
        if note_name == A.NOTE_NAME and ntype == A.NOTE_TYPE_ABI and len(desc) >= 8:
            version, entry = struct.unpack_from("<II", desc)
            break
    else:
        raise GuestImageError(f"{name}: no ringvisor PV note (ELF note \"ringvisor\", type 1): not a "
                              "paravirtualized kernel; run it with --technique native, trap or bt, "
                              "or boot ringos-pv.elf")
    if version >> 16 != A.ABI_VERSION >> 16:
        raise GuestImageError(f"{name}: speaks PV ABI {version >> 16}.{version & 0xFFFF}; this "
                              f"monitor implements {A.ABI_VERSION >> 16}.x")
    if entry != image.entry:
        raise GuestImageError(f"{name}: the PV note's entry {entry:#x} is not the ELF entry "
                              f"{image.entry:#x}")
    return PvImage(name, image.entry, version, image)


def load(memory, image: PvImage, nr_pages: int) -> None:
    """PT_LOAD segments at p_paddr, zero-filled to p_memsz (section 1)."""
    for seg in image.image.segments:
        if seg.paddr + seg.memsz > nr_pages * PAGE:
            raise GuestImageError(f"{image.name}: a segment ends at {seg.paddr + seg.memsz:#x}, beyond "
                                  f"the guest's {nr_pages * PAGE >> 20} MiB")
        memory.write(seg.paddr, seg.data)
        memory.fill(seg.paddr + len(seg.data), seg.memsz - len(seg.data))


def lay_out(memory, paging: DirectPaging, image: PvImage, cmdline: str, tsc_khz: int) -> StartOfDay:
    nr_pages = paging.nr_pages
    first = (image.image.end + PAGE - 1) // PAGE
    n_l1 = (nr_pages + ENTRIES - 1) // ENTRIES
    si, shared, pd = first, first + 1, first + 2
    l1s = range(pd + 1, pd + 1 + n_l1)
    stack = l1s.stop
    free = stack + BOOT_STACK_FRAMES
    if free >= nr_pages:
        raise GuestImageError(f"{image.name}: the kernel and its {free - first} start-of-day frames do "
                              f"not fit in {nr_pages * PAGE >> 20} MiB of guest RAM")
    memory.fill(first * PAGE, (free - first) * PAGE)
    read_only = {si, pd, *l1s}
    for n, pt in enumerate(l1s):
        entries = bytearray(PAGE)
        for i in range(ENTRIES):
            pfn = n * ENTRIES + i
            if pfn < nr_pages:
                flags = P if pfn in read_only else P | W
                struct.pack_into("<I", entries, 4 * i, pfn * PAGE | flags)
        memory.write(pt * PAGE, bytes(entries))
        memory.write_u32(pd * PAGE + 4 * n, pt * PAGE | P | W)
    paging.read_only.add(si)
    paging.unpinnable.update((si, shared))
    for pt in l1s:
        paging.pin(pt * PAGE, 1)
    paging.pin(pd * PAGE, 2)

    raw = cmdline.encode(errors="replace")[:A.CMDLINE_MAX - 1]
    base = si * PAGE
    memory.write(base + A.START_INFO["magic"], A.START_MAGIC)
    for field, value in (("nr_pages", nr_pages), ("shared_info", shared * PAGE), ("pt_base", pd * PAGE),
                         ("nr_pt_frames", 1 + n_l1), ("first_free_pfn", free), ("flags", 0),
                         ("tsc_khz", tsc_khz)):
        memory.write_u32(base + A.START_INFO[field], value)
    memory.write(base + A.START_INFO["cmd_line"], raw + b"\0")
    return StartOfDay(start_info=base, shared_info=shared * PAGE, pt_base=pd * PAGE,
                      nr_pt_frames=1 + n_l1, first_free_pfn=free, stack_top=free * PAGE)
