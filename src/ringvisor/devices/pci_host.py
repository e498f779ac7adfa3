"""PCI configuration mechanism #1 (PCI Local Bus 3.0, 3.2.2.3.2): how
software reaches the functions' configuration spaces on a PC.

- CONFIG_ADDRESS, the dword at port 0xCF8: bit 31 enables the mechanism,
  bits 23:16 bus, 15:11 device, 10:8 function, 7:2 the register's dword;
  bits 30:24 and 1:0 are reserved and read 0 (82441FX datasheet, CONFADD).
  Only dword accesses reach it: a byte or word access to 0xCF8-0xCFB is an
  ordinary I/O cycle (0xCF9 is the PIIX3's reset control register).
- CONFIG_DATA, ports 0xCFC-0xCFF: a byte, word or dword of the addressed
  dword (the port's low two bits pick the byte), when the enable bit is set;
  with it clear the access is an ordinary I/O cycle nobody claims.

A function nobody implements (and every bus but 0: the machine has no
PCI-to-PCI bridge) ends in a master abort: reads return all ones, writes
vanish. That is how software enumerating the bus finds vendor ID 0xFFFF.
"""
from __future__ import annotations

from ringvisor.devices.pci_config import PciFunction

CONFIG_ADDRESS, CONFIG_DATA = 0xCF8, 0xCFC
ENABLE = 1 << 31
ADDRESS_BITS = ENABLE | 0x00FFFFFC     # the rest is reserved (reads 0)


def _ones(size: int) -> int:
    return (1 << 8 * size) - 1


def address(bus: int, device: int, function: int, register: int = 0) -> int:
    """The CONFIG_ADDRESS value that selects a register (enable bit set)."""
    return ENABLE | bus << 16 | device << 11 | function << 8 | (register & 0xFC)


class PciHost:
    """The host's side of the configuration cycles, and bus 0's functions."""

    def __init__(self):
        self.functions: dict[tuple[int, int], PciFunction] = {}   # (device, function) on bus 0
        self.address = 0
        self.cycles = 0                                          # configuration reads and writes

    def attach(self, device: int, function: int, fn: PciFunction) -> None:
        if (device, function) in self.functions:
            raise ValueError(f"00:{device:02x}.{function} is taken")
        self.functions[(device, function)] = fn

    def register(self, ports) -> None:
        ports.register(CONFIG_ADDRESS, 1, _AddressPort(self), "PCI CONFIG_ADDRESS (dword at 0xCF8)")
        ports.register(CONFIG_DATA, 4, _DataPort(self), "PCI CONFIG_DATA")

    def reset(self) -> None:
        """PCIRST#: every function's registers to their reset values."""
        self.address = 0
        for fn in self.functions.values():
            fn.reset()
            if fn.on_write is not None:
                fn.on_write(0, 256)

    def selected(self) -> PciFunction | None:
        if not self.address & ENABLE or (self.address >> 16) & 0xFF:
            return None
        return self.functions.get(((self.address >> 11) & 0x1F, (self.address >> 8) & 7))

    def config_read(self, byte: int, size: int) -> int:
        fn = self.selected()
        self.cycles += 1
        if fn is None:
            return _ones(size)
        return fn.read((self.address & 0xFC) + byte, size)

    def config_write(self, byte: int, size: int, value: int) -> None:
        fn = self.selected()
        self.cycles += 1
        if fn is not None:
            fn.write((self.address & 0xFC) + byte, size, value)


class _AddressPort:
    def __init__(self, host: PciHost):
        self.host = host

    def io_read(self, offset: int, size: int) -> int:
        return self.host.address if size == 4 else _ones(size)

    def io_write(self, offset: int, size: int, value: int) -> None:
        if size == 4:
            self.host.address = value & ADDRESS_BITS


class _DataPort:
    def __init__(self, host: PciHost):
        self.host = host

    def io_read(self, offset: int, size: int) -> int:
        if not self.host.address & ENABLE:
            return _ones(size)
        inside = min(size, 4 - offset)             # a dword at 0xCFE: its top half is not ours
        value = self.host.config_read(offset, inside)
        return value | (_ones(size) & ~_ones(inside)) if inside < size else value

    def io_write(self, offset: int, size: int, value: int) -> None:
        if self.host.address & ENABLE:
            inside = min(size, 4 - offset)
            self.host.config_write(offset, inside, value & _ones(inside))
