"""Where things go in guest-physical memory, with overlap and fit checks, and
the memory map the guest is told about."""
from __future__ import annotations

from dataclasses import dataclass, field

from ringvisor.errors import GuestImageError

PAGE = 4096
LOW_RAM_END = 0x9FC00          # conventional memory ends where an EBDA would start
HIGH_RAM_START = 0x100000      # 1 MiB: 0xA0000-0xFFFFF is the legacy VGA/ROM hole
E820_RAM, E820_RESERVED = 1, 2


def align_up(value: int, alignment: int = PAGE) -> int:
    return (value + alignment - 1) & ~(alignment - 1)


@dataclass
class Layout:
    """Guest-physical placement for one boot. `reserved_top` bytes at the top
    of RAM are withheld from the guest (the monitors' region)."""
    ram_size: int
    reserved_top: int = 0
    used: list[tuple[int, int, str]] = field(default_factory=list)

    @property
    def usable_end(self) -> int:
        return self.ram_size - self.reserved_top

    def claim(self, start: int, length: int, what: str) -> None:
        end = start + length
        if start < 0 or end > self.usable_end:
            raise GuestImageError(
                f"{what} ({start:#x}-{end:#x}) does not fit in guest RAM usable up to {self.usable_end:#x} "
                f"({self.ram_size >> 20} MiB; try a larger --memory)")
        if start < HIGH_RAM_START and end > LOW_RAM_END:
            raise GuestImageError(f"{what} ({start:#x}-{end:#x}) overlaps the legacy hole 0xa0000-0xfffff")
        for s, e, other in self.used:
            if start < e and s < end:
                raise GuestImageError(f"{what} ({start:#x}-{end:#x}) overlaps {other} ({s:#x}-{e:#x})")
        self.used.append((start, end, what))

    def find_free(self, length: int, starts: tuple[int, ...]) -> int | None:
        """The first of `starts` (in order of preference), or the lowest
        page-aligned address above one, where `length` bytes fit without
        overlapping what is claimed, the legacy hole or the reserved top."""
        for start in starts:
            candidate = align_up(start)
            while candidate + length <= self.usable_end:
                if candidate < HIGH_RAM_START and candidate + length > LOW_RAM_END:
                    if candidate >= LOW_RAM_END:
                        candidate = HIGH_RAM_START
                        continue
                    break                  # low memory has no room left above `start`
                clash = [e for s, e, _ in self.used if candidate < e and s < candidate + length]
                if not clash:
                    return candidate
                candidate = align_up(max(clash))
        return None

    def highest_end(self) -> int:
        return max((e for s, e, _ in self.used if s >= HIGH_RAM_START), default=HIGH_RAM_START)

    def memory_map(self) -> list[tuple[int, int, int]]:
        """(base, length, type) entries, e820-style."""
        regions = [(0, LOW_RAM_END, E820_RAM),
                   (LOW_RAM_END, HIGH_RAM_START - LOW_RAM_END, E820_RESERVED),
                   (HIGH_RAM_START, self.usable_end - HIGH_RAM_START, E820_RAM)]
        if self.reserved_top:
            regions.append((self.usable_end, self.reserved_top, E820_RESERVED))
        return regions
