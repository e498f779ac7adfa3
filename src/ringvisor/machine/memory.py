"""Guest RAM: one anonymous mmap shared by every engine.

The KVM engine registers the same mapping as a memory slot (so the guest and
the VMM see the same bytes without copies); the soft engine reads and writes
it directly. Every access made on the guest's behalf is bounds-checked here.
"""
from __future__ import annotations

import ctypes
import mmap

from ringvisor.errors import ConfigError, GuestMemoryError

PAGE_SIZE = 4096
MIN_SIZE = 1 << 20            # the multiboot loader puts kernels at 1 MiB
MAX_SIZE = 3 << 30            # below the 32-bit MMIO hole (0xC0000000)


def parse_size(text: str) -> int:
    """'64M', '1G', '65536' -> bytes. Raises ConfigError on anything else."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    s = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = 1
    if s and s[-1] in units:
        mult, s = units[s[-1]], s[:-1]
    try:
        value = int(s, 0) * mult
    except ValueError:
        raise ConfigError(f"memory size {text!r} is not a size (examples: 64M, 1G)") from None
    return value


def check_size(size: int) -> int:
    if size <= 0:
        raise ConfigError(f"memory size must be positive, got {size}")
    if size % PAGE_SIZE:
        raise ConfigError(f"memory size {size:#x} is not a multiple of 4 KiB")
    if size < MIN_SIZE:
        raise ConfigError(f"memory size {size:#x} is below the 1 MiB minimum")
    if size > MAX_SIZE:
        raise ConfigError(f"memory size {size >> 20} MiB is above the {MAX_SIZE >> 20} MiB maximum")
    return size


class GuestMemory:
    """Guest-physical RAM from address 0 to `size`."""

    def __init__(self, size: int):
        self.size = check_size(size)
        self.mmap = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                              prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self.view = memoryview(self.mmap)
        # The host virtual address, for KVM_SET_USER_MEMORY_REGION.
        self.host_address = ctypes.addressof(ctypes.c_char.from_buffer(self.mmap))

    def contains(self, addr: int, length: int = 1) -> bool:
        return 0 <= addr and length >= 0 and addr + length <= self.size

    def check(self, addr: int, length: int) -> None:
        if not self.contains(addr, length):
            raise GuestMemoryError(
                f"guest-physical range {addr:#x}+{length:#x} is outside guest RAM (0..{self.size:#x})")

    def read(self, addr: int, length: int) -> bytes:
        self.check(addr, length)
        return self.mmap[addr:addr + length]

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        self.check(addr, len(data))
        self.mmap[addr:addr + len(data)] = data

    def fill(self, addr: int, length: int, byte: int = 0) -> None:
        self.check(addr, length)
        self.mmap[addr:addr + length] = bytes([byte]) * length

    def read_u8(self, addr: int) -> int:
        self.check(addr, 1)
        return self.mmap[addr]

    def read_u16(self, addr: int) -> int:
        self.check(addr, 2)
        return int.from_bytes(self.mmap[addr:addr + 2], "little")

    def read_u32(self, addr: int) -> int:
        self.check(addr, 4)
        return int.from_bytes(self.mmap[addr:addr + 4], "little")

    def write_u8(self, addr: int, value: int) -> None:
        self.check(addr, 1)
        self.mmap[addr] = value & 0xFF

    def write_u16(self, addr: int, value: int) -> None:
        self.write(addr, (value & 0xFFFF).to_bytes(2, "little"))

    def write_u32(self, addr: int, value: int) -> None:
        self.write(addr, (value & 0xFFFFFFFF).to_bytes(4, "little"))

    def read_cstring(self, addr: int, limit: int = 4096) -> bytes:
        """A NUL-terminated string the guest pointed us at (bounded)."""
        self.check(addr, 1)
        end = min(addr + limit, self.size)
        data = self.mmap[addr:end]
        nul = data.find(b"\0")
        return data if nul < 0 else data[:nul]

    def close(self) -> None:
        self.view.release()
        # ctypes' from_buffer export keeps the mmap alive; the OS frees it at exit.
