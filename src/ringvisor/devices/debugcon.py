"""The Bochs/QEMU debug console port (0xE9): every byte written is console
output, reads return 0xE9 (the "is the port there" check guests use).

Write-only and side-effect free, so the kvm engine lets the host kernel queue
its writes (coalesced PIO) instead of exiting to Python once per byte."""
from __future__ import annotations

from typing import Callable

PORT = 0xE9
FIRMWARE_PORT = 0x402            # SeaBIOS's CONFIG_DEBUG_IO port (it checks it reads 0xE9)


class DebugCon:
    def __init__(self, output: Callable[[bytes], None]):
        self.output = output
        self.bytes_out = 0

    def io_read(self, offset: int, size: int) -> int:
        return PORT

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.bytes_out += 1
        self.output(bytes((value & 0xFF,)))
