"""Port-I/O and MMIO buses: devices registered with explicit base and length.

A device is any object with `io_read(offset, size) -> int` and
`io_write(offset, size, value)` (offset relative to its base). Overlapping
registrations are errors. Ports listed as ignored read as all ones and swallow
writes silently (they are known legacy hardware we choose not to model);
every access is counted per port, so reports show what the guest touched,
unassigned ports included.

Port dispatch is by a 64 Ki-entry table built at registration time, so the
hot path (one port exit) is two list lookups and one call.
"""
from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from ringvisor.errors import ConfigError

ALL_ONES = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF, 8: 0xFFFFFFFFFFFFFFFF}


class Device(Protocol):
    def io_read(self, offset: int, size: int) -> int: ...
    def io_write(self, offset: int, size: int, value: int) -> None: ...


@dataclass(frozen=True)
class Region:
    base: int
    length: int
    name: str
    device: object

    @property
    def end(self) -> int:
        return self.base + self.length

    def overlaps(self, base: int, length: int) -> bool:
        return base < self.end and self.base < base + length


def _ignored_read(offset: int, size: int) -> int:
    return ALL_ONES[size]


def _ignored_write(offset: int, size: int, value: int) -> None:
    pass


class PortBus:
    SIZE = 0x10000

    def __init__(self):
        self.regions: list[Region] = []
        self.ignored: dict[int, str] = {}
        # Per port: read(offset, size), write(offset, size, value), the region
        # base; None marks an unassigned port.
        self.readers: list = [None] * self.SIZE
        self.writers: list = [None] * self.SIZE
        self.bases: list[int] = [0] * self.SIZE
        # Accesses per port, for statistics (what the guest really touched).
        self.read_counts = [0] * self.SIZE
        self.write_counts = [0] * self.SIZE

    def _check_free(self, base: int, length: int, name: str) -> None:
        if length <= 0 or base < 0 or base + length > self.SIZE:
            raise ConfigError(f"port range {base:#x}+{length} for {name} is not inside 0..0xffff")
        for r in self.regions:
            if r.overlaps(base, length):
                raise ConfigError(f"ports {base:#x}+{length} ({name}) overlap {r.name} at {r.base:#x}+{r.length}")
        for p in range(base, base + length):
            if p in self.ignored:
                raise ConfigError(f"port {p:#x} ({name}) is already listed as ignored ({self.ignored[p]})")

    def register(self, base: int, length: int, device: Device, name: str) -> None:
        self._check_free(base, length, name)
        self.regions.append(Region(base, length, name, device))
        for p in range(base, base + length):
            self.readers[p] = device.io_read
            self.writers[p] = device.io_write
            self.bases[p] = base

    def ignore(self, base: int, length: int, name: str) -> None:
        """Known legacy ports we deliberately do not model (listed by name)."""
        self._check_free(base, length, name)
        for p in range(base, base + length):
            self.ignored[p] = name
            self.readers[p] = _ignored_read
            self.writers[p] = _ignored_write
            self.bases[p] = base

    def read(self, port: int, size: int) -> int:
        self.read_counts[port] += 1
        fn = self.readers[port]
        if fn is None:
            return ALL_ONES[size]
        return fn(port - self.bases[port], size)

    def write(self, port: int, size: int, value: int) -> None:
        self.write_counts[port] += 1
        fn = self.writers[port]
        if fn is not None:
            fn(port - self.bases[port], size, value)

    @property
    def unknown(self) -> Counter:
        """Accesses to ports no device claims and no one listed as ignored."""
        c: Counter = Counter()
        for port, fn in enumerate(self.readers):
            if fn is None:
                if self.read_counts[port]:
                    c[("port", "read", port)] = self.read_counts[port]
                if self.write_counts[port]:
                    c[("port", "write", port)] = self.write_counts[port]
        return c

    def name_of(self, port: int) -> str:
        for r in self.regions:
            if r.base <= port < r.end:
                return r.name
        return self.ignored.get(port, "unassigned")


class MmioBus:
    """Guest-physical MMIO regions, looked up by bisection."""

    def __init__(self):
        self.regions: list[Region] = []
        self._bases: list[int] = []
        self.unknown: Counter = Counter()

    def register(self, base: int, length: int, device: Device, name: str) -> None:
        if length <= 0 or base < 0 or base + length > 1 << 32:
            raise ConfigError(f"MMIO range {base:#x}+{length:#x} for {name} is not inside 4 GiB")
        for r in self.regions:
            if r.overlaps(base, length):
                raise ConfigError(f"MMIO {base:#x}+{length:#x} ({name}) overlaps {r.name} at {r.base:#x}+{r.length:#x}")
        i = bisect.bisect(self._bases, base)
        self.regions.insert(i, Region(base, length, name, device))
        self._bases.insert(i, base)

    def find(self, addr: int) -> Region | None:
        i = bisect.bisect(self._bases, addr) - 1
        if i >= 0 and addr < self.regions[i].end:
            return self.regions[i]
        return None

    def read(self, addr: int, size: int) -> int:
        r = self.find(addr)
        if r is None:
            self.unknown[("mmio", "read", addr)] += 1
            return ALL_ONES[size]
        return r.device.io_read(addr - r.base, size)

    def write(self, addr: int, size: int, value: int) -> None:
        r = self.find(addr)
        if r is None:
            self.unknown[("mmio", "write", addr)] += 1
            return
        r.device.io_write(addr - r.base, size, value)


class SerialisedPorts:
    """A port bus several vCPU threads share: one access at a time (the
    devices are written for one CPU; the kvm engine calls read/write from
    each vCPU's thread)."""

    def __init__(self, bus: PortBus, lock):
        self.bus, self.lock = bus, lock

    def read(self, port: int, size: int) -> int:
        with self.lock:
            return self.bus.read(port, size)

    def write(self, port: int, size: int, value: int) -> None:
        with self.lock:
            self.bus.write(port, size, value)
