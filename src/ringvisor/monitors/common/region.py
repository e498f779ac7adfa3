"""The monitor's region: the top RESERVED_BYTES of guest RAM, hidden from the
guest by the memory map, and mapped in every page directory the real CPU
uses, supervisor-only, at a linear address the guest gives up:

* trap, bt (and hw on the soft engine): the top 4 MiB, 0xFFC00000 (page-
  directory entry 1023), as in VMware's monitor. Guest segments are cut
  below it, so the guest loses 4 MiB of linear space and nothing else: the
  xAPIC (0xFEE00000), the I/O APIC (0xFEC00000) and the HPET (0xFED00000)
  stay reachable (under trap and bt through traps: device_access.py).
  Linux is told `reservetop=` so its fixmap ends below (boot/linux.py,
  docs/monitors.md);
* pv: 0xF0000000, the hole of 256 MiB the PV ABI (docs/pv-abi.md) leaves to
  the monitor; the region uses the hole's first 4 MiB.

Layout (offsets from the region's start; one page table maps it all):

    0x00000  page table mapping the region at linear_base
    0x01000  trap stubs: 256 x 4 bytes (out %al, $TRAP_PORT; hlt; nop)
    0x02000  the real IDT (256 gates, all to the stubs, DPL 0)
    0x03000  the real TSS (SS0:ESP0 = the monitor stack; no I/O bitmap)
    0x04000  the monitor's ring-0 stack (one page; it holds one frame)
    0x10000  the real GDT, kernel view (64 KiB: every selector the guest may use)
    0x20000  the real GDT, user view
    0x30000  the frame pool for shadow page directories and tables; under
             binary translation the translation cache comes first
             (TC_BYTES at 0x30000) and the pool follows it
"""
from __future__ import annotations

from ringvisor.errors import ConfigError

RESERVED_BYTES = 4 << 20          # one page table's reach
LINEAR_BASE = 0x100000000 - RESERVED_BYTES    # trap/bt: the top 4 MiB, page-directory entry 1023
PAGE = 0x1000

PAGE_TABLE, STUBS, IDT, TSS, STACK = 0x0000, 0x1000, 0x2000, 0x3000, 0x4000
STACK_TOP = STACK + PAGE
GDT_KERNEL_VIEW, GDT_USER_VIEW = 0x10000, 0x20000
GDT_BYTES = 0x10000
POOL = 0x30000
TC, TC_BYTES = POOL, 0x80000      # bt: the translation cache, carved from the pool's start
STUB_SIZE = 4
MIN_MEMORY = 2 * RESERVED_BYTES     # the guest keeps at least as much as the monitor


class MonitorRegion:
    def __init__(self, memory, ram_size: int, tc_bytes: int = 0, linear_base: int = LINEAR_BASE):
        if ram_size < MIN_MEMORY:          # monitors.check_memory says so before this
            raise ConfigError(f"guest RAM of {ram_size >> 20} MiB is too small for the monitor's "
                              f"{RESERVED_BYTES >> 20} MiB region (at least {MIN_MEMORY >> 20} MiB)")
        self.memory = memory
        self.mm = memory.mmap
        self.phys = ram_size - RESERVED_BYTES
        self.end = ram_size
        self.tc_bytes = tc_bytes
        # Linear addresses from linear_base up are the monitor's; the region
        # is mapped by the one page-directory entry hole_pde.
        self.linear_base, self.hole_pde = linear_base, linear_base >> 22
        self.free_frames = list(range(self.end - PAGE, self.phys + POOL + tc_bytes - 1, -PAGE))
        self.pool_size = len(self.free_frames)

    # --- addresses -----------------------------------------------------------
    def linear(self, offset: int) -> int:
        return self.linear_base + offset

    def physical(self, offset: int) -> int:
        return self.phys + offset

    def contains(self, phys: int) -> bool:
        return self.phys <= phys < self.end

    # --- frames for shadow tables ----------------------------------------------
    def alloc_frame(self) -> int | None:
        """A zeroed pool frame (physical address), or None when exhausted."""
        if not self.free_frames:
            return None
        f = self.free_frames.pop()
        self.mm[f:f + PAGE] = bytes(PAGE)
        return f

    def free_frame(self, frame: int) -> None:
        self.free_frames.append(frame)

    # --- raw physical access (the monitor's own memory) -------------------------
    def read_u32(self, phys: int) -> int:
        return int.from_bytes(self.mm[phys:phys + 4], "little")

    def write_u32(self, phys: int, value: int) -> None:
        self.mm[phys:phys + 4] = (value & 0xFFFFFFFF).to_bytes(4, "little")

    def write_u64(self, phys: int, value: int) -> None:
        self.mm[phys:phys + 8] = value.to_bytes(8, "little")

    def read_u64(self, phys: int) -> int:
        return int.from_bytes(self.mm[phys:phys + 8], "little")

    def write_bytes(self, phys: int, data: bytes) -> None:
        self.mm[phys:phys + len(data)] = data
