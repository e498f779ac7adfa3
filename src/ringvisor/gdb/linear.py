"""Guest linear memory as a debugger sees it: the guest's own page tables
walked without side effects, for any engine that keeps guest RAM in a
`GuestMemory`.

gdb's addresses are linear (a flat kernel's addresses). The walk follows SDM
vol. 3 ch. 4: paging off (CR0.PG=0) maps linear to physical one to one;
32-bit paging with 4 KiB pages and, with CR4.PSE, 4 MiB pages; PAE paging
(CR4.PAE) with 4 KiB and 2 MiB pages. Like a hardware debugger (and QEMU's
gdbstub) it reads and writes regardless of U/S and R/W: gdb must be able to
read kernel data and plant breakpoints in read-only code. It never sets an
accessed or dirty bit, never fills a TLB and never injects a #PF: a page
that is not present raises `MemoryFault`, and so does a physical address
outside RAM (MMIO is never touched by a debugger's read).
"""
from __future__ import annotations

from typing import Callable

from ringvisor.gdb.target import MemoryFault
from ringvisor.cpu_state import CpuState

P, PS = 0x1, 0x80
CR0_PG = 1 << 31
CR4_PSE, CR4_PAE = 1 << 4, 1 << 5
EFER_LMA = 1 << 10
PAGE = 0x1000


class LinearMemory:
    """`read`/`write` by guest linear address. `state` gives the guest's
    current CR0/CR3/CR4 (the guest's view: under shadow paging, the guest's
    own CR3, not the shadow); `written(physical, length)` is told about every
    write so the engine can drop translated code covering it."""

    def __init__(self, memory, state: Callable[[], CpuState],
                 written: Callable[[int, int], None] | None = None):
        self.memory = memory
        self.state = state
        self.written = written

    # -- translation ---------------------------------------------------------------
    def translate(self, linear: int, state: CpuState | None = None) -> int:
        """The physical address of `linear`, or MemoryFault."""
        s = state or self.state()
        linear &= 0xFFFFFFFF
        if not s.cr0 & CR0_PG:
            return linear
        if s.efer & EFER_LMA:
            raise MemoryFault(linear, "long-mode paging is not walked by the stub")
        if s.cr4 & CR4_PAE:
            return self._pae(linear, s)
        return self._legacy(linear, s)

    def _entry(self, address: int, size: int, linear: int) -> int:
        if not self.memory.contains(address, size):
            raise MemoryFault(linear, f"page-table entry at {address:#x} is outside RAM")
        return int.from_bytes(self.memory.read(address, size), "little")

    def _legacy(self, linear: int, s: CpuState) -> int:
        pde = self._entry((s.cr3 & 0xFFFFF000) | ((linear >> 20) & 0xFFC), 4, linear)
        if not pde & P:
            raise MemoryFault(linear, "page directory entry not present")
        if pde & PS and s.cr4 & CR4_PSE:
            return (pde & 0xFFC00000) | (linear & 0x3FFFFF)
        pte = self._entry((pde & 0xFFFFF000) | ((linear >> 10) & 0xFFC), 4, linear)
        if not pte & P:
            raise MemoryFault(linear, "page table entry not present")
        return (pte & 0xFFFFF000) | (linear & 0xFFF)

    def _pae(self, linear: int, s: CpuState) -> int:
        pdpte = self._entry((s.cr3 & 0xFFFFFFE0) | ((linear >> 27) & 0x18), 8, linear)
        if not pdpte & P:
            raise MemoryFault(linear, "page directory pointer entry not present")
        pde = self._entry((pdpte & 0xFFFFFF000) | ((linear >> 18) & 0xFF8), 8, linear)
        if not pde & P:
            raise MemoryFault(linear, "page directory entry not present")
        if pde & PS:
            return (pde & 0xFFFE00000) | (linear & 0x1FFFFF)
        pte = self._entry((pde & 0xFFFFFF000) | ((linear >> 9) & 0xFF8), 8, linear)
        if not pte & P:
            raise MemoryFault(linear, "page table entry not present")
        return (pte & 0xFFFFFF000) | (linear & 0xFFF)

    def _pieces(self, address: int, length: int) -> list[tuple[int, int, int]]:
        """(linear, physical, length) for each page the range touches, all
        translated before any byte moves (writes are all or nothing)."""
        if address < 0 or length < 0:
            raise MemoryFault(address, "a negative address or length")
        if address + length > 1 << 32:      # what lies below 4 GiB can still be read
            raise MemoryFault(max(address, 1 << 32), "beyond the 4 GiB linear space")
        s = self.state()
        pieces = []
        at, end = address, address + length
        while at < end:
            n = min(end, (at & ~(PAGE - 1)) + PAGE) - at
            physical = self.translate(at, s)
            if not self.memory.contains(physical, n):
                raise MemoryFault(at, f"physical address {physical:#x} is not RAM")
            pieces.append((at, physical, n))
            at += n
        return pieces

    # -- access --------------------------------------------------------------------
    def read(self, address: int, length: int) -> bytes:
        return b"".join(self.memory.read(physical, n) for _, physical, n in self._pieces(address, length))

    def write(self, address: int, data: bytes) -> None:
        offset = 0
        for _, physical, n in self._pieces(address, len(data)):
            self.memory.write(physical, data[offset:offset + n])
            if self.written is not None:
                self.written(physical, n)
            offset += n
