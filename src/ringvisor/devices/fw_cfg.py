"""QEMU's firmware configuration device (fw_cfg) on x86 ports 0x510-0x51B,
as QEMU's docs/specs/fw_cfg describe it: how test kernels and firmware
written for QEMU learn about their machine.

- 0x510, selector (16-bit write, little-endian): picks an item and resets
  the data offset to 0. Bit 14 (write channel) and bit 15 (arch-local) are
  part of the key.
- 0x511, data: each byte read returns the item's next byte; past the end
  it reads 0. A wider read returns that many successive bytes (in memory
  order). Writes are ignored, as in QEMU since 2.4.
- 0x514/0x518, the DMA address (big-endian, high then low half; writing the
  low half starts the transfer): a `FWCfgDmaAccess` {be32 control, be32
  length, be64 address} in guest memory; control bits select (key in bits
  31:16), read, skip; write is refused (every item here is read-only) with
  the error bit; control is written back 0 when done. Reading 0x514 gives
  the signature "QEMU CFG".

Items: signature "QEMU", ID (traditional interface and DMA), UUID (zero),
RAM size, no-graphic, CPU count and maximum, the command line (size and
data, when there is one), IRQ 0 override (1: the PIT is on I/O APIC pin
2), the file directory (big-endian count, then {be32 size, be16 select,
be16 reserved, name[56]} sorted by name, selectors from 0x20) and files:
`etc/e820` (the memory map, {le64 address, le64 length, le32 type}) and
whatever the machine adds with `add_file`.
"""
from __future__ import annotations

import struct

from ringvisor.errors import ConfigError, RingvisorError

BASE = 0x510
PORTS = 12                       # 0x510-0x51B: selector, data, DMA address

SIGNATURE, ID, UUID, RAM_SIZE, NOGRAPHIC, NB_CPUS = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05
MAX_CPUS, CMDLINE_SIZE, CMDLINE_DATA, FILE_DIR = 0x0F, 0x14, 0x15, 0x19
FILE_FIRST = 0x20
IRQ0_OVERRIDE = 0x8002
ID_TRADITIONAL, ID_DMA = 1 << 0, 1 << 1
DMA_ERROR, DMA_READ, DMA_SKIP, DMA_SELECT, DMA_WRITE = 0x01, 0x02, 0x04, 0x08, 0x10
DMA_SIGNATURE = b"QEMU CFG"
MAX_FILE_PATH = 56
SELECTOR, DATA, DMA_HIGH, DMA_LOW = 0, 1, 4, 8


def e820_file(memory_map) -> bytes:
    return b"".join(struct.pack("<QQI", base, length, kind) for base, length, kind in memory_map)


class FwCfg:
    def __init__(self, *, cpus: int, ram_size: int, memory=None, cmdline: bytes | None = None,
                 memory_map=(), max_cpus: int | None = None):
        self.memory = memory             # guest RAM, for DMA; None: no DMA interface
        self.items: dict[int, bytes] = {
            SIGNATURE: b"QEMU",
            ID: struct.pack("<I", ID_TRADITIONAL | (ID_DMA if memory is not None else 0)),
            UUID: bytes(16),
            RAM_SIZE: struct.pack("<Q", ram_size),
            NOGRAPHIC: struct.pack("<H", 1),
            NB_CPUS: struct.pack("<H", cpus),
            MAX_CPUS: struct.pack("<H", max_cpus or cpus),
            IRQ0_OVERRIDE: struct.pack("<I", 1),
        }
        if cmdline is not None:
            data = cmdline.rstrip(b"\0") + b"\0"
            self.items[CMDLINE_SIZE] = struct.pack("<I", len(data))
            self.items[CMDLINE_DATA] = data
        self.files: dict[str, bytes] = {}
        if memory_map:
            self.add_file("etc/e820", e820_file(memory_map))
        self.selected = SIGNATURE
        self.offset = 0
        self.dma_high = 0
        self.transfers = 0

    # -- items -------------------------------------------------------------------------
    def add_file(self, name: str, data: bytes) -> None:
        if not 0 < len(name.encode()) < MAX_FILE_PATH:
            raise ConfigError(f"fw_cfg file name {name!r} must be 1 to {MAX_FILE_PATH - 1} bytes")
        self.files[name] = bytes(data)
        directory = [struct.pack(">I", len(self.files))]
        for key, fname in enumerate(sorted(self.files), FILE_FIRST):
            self.items[key] = self.files[fname]
            directory.append(struct.pack(">IHH56s", len(self.files[fname]), key, 0, fname.encode()))
        self.items[FILE_DIR] = b"".join(directory)

    def select(self, key: int) -> None:
        self.selected, self.offset = key & 0xFFFF, 0

    def _take(self, length: int) -> bytes:
        item = self.items.get(self.selected, b"")
        chunk = item[self.offset:self.offset + length]
        self.offset += length
        return chunk + bytes(length - len(chunk))

    # -- ports ---------------------------------------------------------------------------
    def io_read(self, offset: int, size: int) -> int:
        if offset == DATA:
            return int.from_bytes(self._take(size), "little")
        if DMA_HIGH <= offset < DMA_HIGH + 8 and self.memory is not None:
            start = offset - DMA_HIGH
            return int.from_bytes(DMA_SIGNATURE[start:start + size].ljust(size, b"\0"), "little")
        return (1 << (8 * size)) - 1

    def io_write(self, offset: int, size: int, value: int) -> None:
        if offset == SELECTOR:
            self.select(value)
        elif self.memory is None:
            return
        elif offset == DMA_HIGH and size == 4:
            self.dma_high = int.from_bytes(value.to_bytes(4, "little"), "big")
        elif offset == DMA_LOW and size == 4:
            low = int.from_bytes(value.to_bytes(4, "little"), "big")
            self._dma(self.dma_high << 32 | low)
            self.dma_high = 0

    def _dma(self, address: int) -> None:
        self.transfers += 1
        try:
            control, length, target = struct.unpack(">IIQ", self.memory.read(address, 16))
        except RingvisorError:
            return                       # the descriptor is not in RAM: nothing to report to
        status = 0
        if control & DMA_SELECT:
            self.select(control >> 16)
        try:
            if control & DMA_WRITE:
                status = DMA_ERROR       # no item here is writable
            elif control & DMA_READ:
                self.memory.write(target, self._take(length))
            elif control & DMA_SKIP:
                self.offset += length
        except RingvisorError:
            status = DMA_ERROR
        self.memory.write(address, struct.pack(">I", status))

    def register(self, ports, base: int = BASE) -> None:
        ports.register(base, PORTS if self.memory is not None else 2, self, "fw_cfg")
