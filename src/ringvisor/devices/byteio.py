"""Wide accesses to byte-wide ISA devices.

The legacy PC devices (UART, PIC, PIT) have 8-bit registers on an 8-bit bus.
A 16- or 32-bit IN/OUT to them is split by the chipset into consecutive byte
cycles at port, port+1, ...; we do the same, so an odd-sized access is defined
(with the side effects the byte accesses would have) and never an exception.
Bytes that fall past the device's ports read as 0xFF and are dropped on write,
as on a bus where nobody answers.
"""
from __future__ import annotations

from typing import Callable

SIZES = (1, 2, 4)


def read_bytes(read_byte: Callable[[int], int], offset: int, size: int, length: int) -> int:
    """Assemble a little-endian value of `size` bytes from byte reads."""
    if size not in SIZES:
        size = 1
    value = 0
    for i in range(size):
        reg = offset + i
        byte = read_byte(reg) & 0xFF if 0 <= reg < length else 0xFF
        value |= byte << (8 * i)
    return value


def write_bytes(write_byte: Callable[[int, int], None], offset: int, size: int, value: int,
                length: int) -> None:
    """Split a little-endian value of `size` bytes into byte writes."""
    if size not in SIZES:
        size = 1
    for i in range(size):
        reg = offset + i
        if 0 <= reg < length:
            write_byte(reg, (value >> (8 * i)) & 0xFF)
