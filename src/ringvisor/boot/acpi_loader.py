"""The ACPI tables as QEMU hands them to firmware: fw_cfg files plus the
"linker/loader" script that SeaBIOS and OVMF execute (QEMU's
hw/acpi/bios-linker-loader.c describes the format).

- `etc/acpi/rsdp`: the RSDP, to be allocated in the F-segment;
- `etc/acpi/tables`: every other table, one image, 64-byte aligned (the
  FACS needs it), each pointer in it an offset within the image;
- `etc/table-loader`: 128-byte commands, little-endian: ALLOCATE (file,
  alignment, zone), ADD_POINTER (destination file, source file, offset,
  size: add the source file's address to the pointer at that offset), and
  ADD_CHECKSUM (file, checksum offset, start, length: make the range sum to
  zero). Checksum fields are left 0 for the firmware to fill, as QEMU does.

With these in fw_cfg, a QEMU-style firmware (`--bios`) installs the same
tables ringvisor writes into memory itself (boot/acpi.py).
"""
from __future__ import annotations

import struct

from ringvisor.boot import acpi
from ringvisor.boot.acpi import Blobs
from ringvisor.boot.pc_description import PcDescription

TABLES, RSDP, LOADER = "etc/acpi/tables", "etc/acpi/rsdp", "etc/table-loader"
ALLOCATE, ADD_POINTER, ADD_CHECKSUM = 1, 2, 3
ZONE_HIGH, ZONE_FSEG = 1, 2
COMMAND_SIZE = 128
NAME_SIZE = 56
IMAGE_LIMIT = 1 << 20


def _name(text: str) -> bytes:
    return text.encode().ljust(NAME_SIZE, b"\0")


def allocate(file: str, align: int, zone: int) -> bytes:
    return struct.pack("<I56sIB", ALLOCATE, _name(file), align, zone).ljust(COMMAND_SIZE, b"\0")


def add_pointer(dest: str, src: str, offset: int, size: int) -> bytes:
    return struct.pack("<I56s56sIB", ADD_POINTER, _name(dest), _name(src), offset, size).ljust(
        COMMAND_SIZE, b"\0")


def add_checksum(file: str, offset: int, start: int, length: int) -> bytes:
    return struct.pack("<I56sIII", ADD_CHECKSUM, _name(file), offset, start, length).ljust(
        COMMAND_SIZE, b"\0")


def files(desc: PcDescription) -> dict[str, bytes]:
    """The three fw_cfg files for `desc`'s ACPI tables."""
    blobs = acpi.build(desc, Blobs(0, IMAGE_LIMIT))   # addresses = offsets in the image
    placed = blobs.placed
    image = bytearray(blobs.end)
    for what, (offset, data) in placed.items():
        if what != "RSDP":
            image[offset:offset + len(data)] = data
    rsdp = bytearray(placed["RSDP"][1])
    script = [allocate(RSDP, 16, ZONE_FSEG), allocate(TABLES, 64, ZONE_HIGH),
              add_pointer(RSDP, TABLES, 16, 4), add_pointer(RSDP, TABLES, 24, 8)]
    fadt = placed["FACP"][0]
    script += [add_pointer(TABLES, TABLES, fadt + field, size)
               for field, size in ((36, 4), (40, 4), (132, 8), (140, 8))]
    for name, width in (("RSDT", 4), ("XSDT", 8)):
        base, data = placed[name]
        script += [add_pointer(TABLES, TABLES, base + offset, width)
                   for offset in range(acpi.HEADER_SIZE, len(data), width)]
    for what, (base, data) in placed.items():
        if what not in ("RSDP", "FACS"):
            image[base + 9] = 0
            script.append(add_checksum(TABLES, base + 9, base, len(data)))
    rsdp[8] = rsdp[32] = 0
    script += [add_checksum(RSDP, 8, 0, 20), add_checksum(RSDP, 32, 0, len(rsdp))]
    return {RSDP: bytes(rsdp), TABLES: bytes(image), LOADER: b"".join(script)}
