"""One PCI function's 256-byte configuration space (PCI Local Bus 2.1/3.0,
6.1-6.2), as a table: each register's reset value and which of its bits
software may write.

A function is described by `Register(offset, size, reset, writable, clear)`
rows; bytes no row names are reserved: they read 0 and ignore writes, as
the spec asks of implemented functions. `clear` bits are "write 1 to clear"
(the status register's error bits). `reset()` puts every register back to
its reset value, as PCIRST# does; `on_write(offset, size)` lets a device
act on a register it owns (the host bridge's PAM registers).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

CONFIG_SIZE = 256

# Header offsets (PCI 3.0, 6.1).
VENDOR_ID, DEVICE_ID, COMMAND, STATUS = 0x00, 0x02, 0x04, 0x06
REVISION_ID, CLASS_PROG, SUBCLASS, CLASS = 0x08, 0x09, 0x0A, 0x0B
HEADER_TYPE = 0x0E
MULTIFUNCTION = 0x80             # header type bit 7: the device has functions 1-7


class Register(NamedTuple):
    offset: int
    size: int
    reset: int
    writable: int = 0            # bits software can change
    clear: int = 0               # bits a 1 written clears (R/WC)
    name: str = ""


def header(vendor: int, device: int, revision: int, class_code: int, *, command: int,
           command_writable: int, status: int, status_clear: int, header_type: int) -> tuple[Register, ...]:
    """The type-0 header registers every function has (`class_code` is the
    24-bit base class, subclass, programming interface)."""
    return (
        Register(VENDOR_ID, 2, vendor, name="VID"),
        Register(DEVICE_ID, 2, device, name="DID"),
        Register(COMMAND, 2, command, command_writable, name="PCICMD"),
        Register(STATUS, 2, status, clear=status_clear, name="PCISTS"),
        Register(REVISION_ID, 1, revision, name="RID"),
        Register(CLASS_PROG, 3, class_code, name="CLASSC"),
        Register(HEADER_TYPE, 1, header_type, name="HEDT"),
    )


class PciFunction:
    def __init__(self, name: str, registers: tuple[Register, ...],
                 on_write: Callable[[int, int], None] | None = None):
        self.name = name
        self.registers = registers
        self.on_write = on_write
        self.config = bytearray(CONFIG_SIZE)
        self.wmask = bytearray(CONFIG_SIZE)     # per byte: bits software may write
        self.w1c = bytearray(CONFIG_SIZE)       # per byte: bits a 1 clears
        self.reset_image = bytearray(CONFIG_SIZE)
        for r in registers:
            if r.offset + r.size > CONFIG_SIZE:
                raise ValueError(f"{name}: register {r.name} at {r.offset:#x} is outside the 256 bytes")
            for i in range(r.size):
                self.reset_image[r.offset + i] = (r.reset >> (8 * i)) & 0xFF
                self.wmask[r.offset + i] = (r.writable >> (8 * i)) & 0xFF
                self.w1c[r.offset + i] = (r.clear >> (8 * i)) & 0xFF
        self.reset()

    def reset(self) -> None:
        self.config[:] = self.reset_image

    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.config[offset:offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        changed = False
        for i in range(size):
            at = offset + i
            byte = (value >> (8 * i)) & 0xFF
            old = self.config[at]
            mask = self.wmask[at]
            new = (old & ~mask) | (byte & mask)
            new &= ~(byte & self.w1c[at]) & 0xFF
            if new != old:
                self.config[at] = new
                changed = True
        if changed and self.on_write is not None:
            self.on_write(offset, size)

    @property
    def multifunction(self) -> bool:
        return bool(self.config[HEADER_TYPE] & MULTIFUNCTION)
