"""Read-only memory on the MMIO bus: the firmware ROM's alias at the top of
4 GiB (boot/firmware.py). Reads return the ROM's bytes; writes are dropped,
as a flash part that was not sent its program command drops them, and
counted so a report can show a guest that wrote there."""
from __future__ import annotations


class Rom:
    def __init__(self, data: bytes):
        self.data = bytes(data)
        self.writes_dropped = 0

    def io_read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.data[offset:offset + size], "little")

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.writes_dropped += 1
