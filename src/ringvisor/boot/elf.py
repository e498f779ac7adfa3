"""Just enough ELF to load a 32-bit x86 executable: its PT_LOAD segments."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ringvisor.errors import GuestImageError

ELF_MAGIC = b"\x7fELF"
ELFCLASS32, ELFCLASS64, ELFDATA2LSB = 1, 2, 1
ET_EXEC, EM_386, PT_LOAD = 2, 3, 1

_EHDR = struct.Struct("<16sHHIIIIIHHHHHH")
_PHDR = struct.Struct("<IIIIIIII")


@dataclass(frozen=True)
class Segment:
    paddr: int
    vaddr: int
    data: bytes       # the file-backed part
    memsz: int        # data is zero-extended to this size


@dataclass(frozen=True)
class ElfImage:
    entry: int
    segments: tuple[Segment, ...]

    @property
    def end(self) -> int:
        return max(s.paddr + s.memsz for s in self.segments)


def is_elf(data: bytes) -> bool:
    return data[:4] == ELF_MAGIC


def parse_elf32(data: bytes, name: str) -> ElfImage:
    if len(data) < _EHDR.size:
        raise GuestImageError(f"{name}: truncated ELF header")
    ident, e_type, machine, _ver, entry, phoff, _shoff, _flags, _ehsize, phentsize, phnum, *_ = \
        _EHDR.unpack_from(data)
    if ident[4] == ELFCLASS64:
        raise GuestImageError(f"{name}: a 64-bit ELF; ringvisor boots 32-bit (i386) Multiboot kernels")
    if ident[4] != ELFCLASS32 or ident[5] != ELFDATA2LSB:
        raise GuestImageError(f"{name}: not a little-endian 32-bit ELF")
    if machine != EM_386:
        raise GuestImageError(f"{name}: ELF for machine {machine}, not i386 (3)")
    if e_type != ET_EXEC:
        raise GuestImageError(f"{name}: ELF type {e_type} is not an executable (ET_EXEC)")
    if phentsize < _PHDR.size or phoff + phnum * phentsize > len(data):
        raise GuestImageError(f"{name}: program headers lie outside the file")
    segments = []
    for i in range(phnum):
        p_type, offset, vaddr, paddr, filesz, memsz, _f, _a = _PHDR.unpack_from(data, phoff + i * phentsize)
        if p_type != PT_LOAD or memsz == 0:
            continue
        if filesz > memsz or offset + filesz > len(data):
            raise GuestImageError(f"{name}: segment {i} is larger than the file or its memory size")
        segments.append(Segment(paddr, vaddr, data[offset:offset + filesz], memsz))
    if not segments:
        raise GuestImageError(f"{name}: ELF has no loadable segment")
    return ElfImage(entry, tuple(segments))
