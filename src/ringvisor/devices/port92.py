"""System control port A (I/O port 0x92, the PS/2 "fast A20 and reset"
port): bit 0 written 1 resets the CPU (a 0->1 edge), bit 1 is the A20 gate.
Other bits are kept and read back; bit 0 reads back as written.

The soft CPU has no A20 mask (addresses never wrap at 1 MiB once past the
BIOS), so bit 1 is recorded, not enforced; a guest that clears it to wrap
addresses would notice, and no OS since DOS does.
"""
from __future__ import annotations

from typing import Callable

PORT = 0x92
FAST_RESET, A20 = 0x01, 0x02


class Port92:
    def __init__(self, reset: Callable[[], None] | None = None):
        self.reset = reset or (lambda: None)
        self.value = A20                  # the BIOS left A20 enabled
        self.resets = 0

    def io_read(self, offset: int, size: int) -> int:
        return self.value | ((1 << 8 * size) - 256 if size > 1 else 0)

    def io_write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        rising = value & FAST_RESET and not self.value & FAST_RESET
        self.value = value
        if rising:
            self.resets += 1
            self.reset()
