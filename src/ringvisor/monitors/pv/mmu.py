"""Direct paging (docs/pv-abi.md section 7): the real CPU walks the guest's
own page tables, so the monitor keeps them safe by owning every change to a
frame that *is* a page table. A frame becomes one when the guest pins it;
from then on the guest may only read it and asks the monitor to change it.

The invariants, kept at all times for every pinned table:

1. every present entry names a frame of the guest (pfn < nr_pages): the
   monitor's region and anything beyond RAM are out of reach;
2. no present entry of a pinned L1 maps a pinned table, or a frame the
   monitor shares read-only (start_info), with W = 1;
3. a present entry of a pinned L2 names a pinned L1, with PS = 0;
4. entries 960-1023 of a pinned L2 (0xF0000000 and up) are the monitor's;
5. reserved bits are 0.

Two counters per frame make the checks O(1) per entry: how many W=1
mappings of it exist in pinned L1s, and how many pinned-L2 entries name it.
Errors are PvError(errno, reason); nothing changes when a check fails.
"""
from __future__ import annotations

from collections import Counter

from ringvisor.monitors.pv import abi as A

P, W, PS = 0x1, 0x2, 0x80
PAGE = 0x1000
ENTRIES = 1024
# Reserved bits: no PAT (bit 7) or global pages (bit 8) in 1.0; in a directory
# entry PS (bit 7) is its own error, D (bit 6) and G (bit 8) are reserved.
L1_RESERVED = 0x180
L2_RESERVED = 0x140
LEVEL_NAMES = {1: "page table (L1)", 2: "page directory (L2)"}


class PvError(Exception):
    """A hypercall fails: the guest gets -errno; `reason` is for the statistics."""

    def __init__(self, errno: int, reason: str):
        super().__init__(f"-{A.ERRNO_NAMES[errno]}: {reason}")
        self.errno, self.reason = errno, reason


class DirectPaging:
    def __init__(self, mm, nr_pages: int, monitor_pde: int, stats: Counter):
        self.mm, self.nr_pages, self.monitor_pde, self.stats = mm, nr_pages, monitor_pde, stats
        self.level: dict[int, int] = {}            # pfn -> 1 or 2
        self.writable: Counter = Counter()          # pfn -> W=1 mappings in pinned L1s
        self.l1_users: Counter = Counter()          # pfn -> pinned-L2 entries naming it
        self.read_only: set[int] = set()            # frames the monitor shares read-only
        self.unpinnable: set[int] = set()           # frames the monitor itself writes

    # --- raw entries ----------------------------------------------------------------
    def entry(self, pfn: int, index: int) -> int:
        a = pfn * PAGE + 4 * index
        return int.from_bytes(self.mm[a:a + 4], "little")

    def _set_entry(self, pfn: int, index: int, value: int) -> None:
        a = pfn * PAGE + 4 * index
        self.mm[a:a + 4] = value.to_bytes(4, "little")

    def guest_indices(self, level: int) -> range:
        return range(A.HOLE_PDE) if level == 2 else range(ENTRIES)

    # --- checks (errno, reason) or None --------------------------------------------------
    def _protected(self, pfn: int) -> bool:
        return pfn in self.level or pfn in self.read_only

    def check_l1(self, val: int, becoming: int | None = None) -> tuple[int, str] | None:
        """An L1 entry; `becoming` is a frame about to be pinned (counts as pinned)."""
        if not val & P:
            return None
        if val & L1_RESERVED:
            return A.EINVAL, "reserved bits in a page-table entry"
        pfn = val >> 12
        if pfn >= self.nr_pages:
            return A.EPERM, "a frame that is not the guest's"
        if val & W and (self._protected(pfn) or pfn == becoming):
            return A.EPERM, "a writable mapping of a page table"
        return None

    def check_l2(self, val: int) -> tuple[int, str] | None:
        if not val & P:
            return None
        if val & PS:
            return A.EINVAL, "a 4 MiB page (PS) in a directory entry"
        if val & L2_RESERVED:
            return A.EINVAL, "reserved bits in a directory entry"
        pfn = val >> 12
        if pfn >= self.nr_pages:
            return A.EPERM, "a frame that is not the guest's"
        if self.level.get(pfn) != 1:
            return A.EPERM, "a directory entry naming an unpinned page table"
        return None

    def frame_of(self, pa: int) -> int:
        if pa & (PAGE - 1):
            raise PvError(A.EINVAL, "a table address that is not page-aligned")
        pfn = pa >> 12
        if pfn >= self.nr_pages:
            raise PvError(A.EINVAL, "a table frame outside guest RAM")
        return pfn

    # --- counters ---------------------------------------------------------------------------
    def _account(self, level: int, val: int, delta: int) -> None:
        if not val & P:
            return
        counter = self.l1_users if level == 2 else self.writable if val & W else None
        if counter is None:
            return
        pfn = val >> 12
        counter[pfn] += delta
        if counter[pfn] <= 0:
            del counter[pfn]

    # --- the operations --------------------------------------------------------------------
    def pin(self, pa: int, level: int) -> None:
        if level not in (1, 2):
            raise PvError(A.EINVAL, "a table level other than 1 or 2")
        pfn = self.frame_of(pa)
        if pfn in self.level:
            raise PvError(A.EBUSY, "a frame that is already pinned")
        if pfn in self.unpinnable:
            raise PvError(A.EPERM, "pinning start_info or shared_info")
        if self.writable[pfn]:
            raise PvError(A.EPERM, "pinning a frame the guest still maps writable")
        entries = [self.entry(pfn, i) for i in range(ENTRIES)]
        if level == 2 and any(entries[A.HOLE_PDE:]):
            raise PvError(A.EPERM, "a directory with entries in the monitor's hole")
        for val in entries[:len(self.guest_indices(level))]:
            bad = self.check_l1(val, becoming=pfn) if level == 1 else self.check_l2(val)
            if bad is not None:
                raise PvError(A.EPERM, f"pinning a table with {bad[1]}")
        self.level[pfn] = level
        for val in entries[:len(self.guest_indices(level))]:
            self._account(level, val, +1)
        if level == 2:
            self._set_entry(pfn, A.HOLE_PDE, self.monitor_pde)
        self.stats[f"pinned_l{level}"] += 1

    def unpin(self, pa: int, current_base: int) -> None:
        pfn = self.frame_of(pa)
        level = self.level.get(pfn)
        if level is None:
            raise PvError(A.EINVAL, "unpinning a frame that is not pinned")
        if level == 2 and pfn == current_base >> 12:
            raise PvError(A.EBUSY, "unpinning the current page directory")
        if level == 1 and self.l1_users[pfn]:
            raise PvError(A.EBUSY, "unpinning a page table a pinned directory uses")
        for i in self.guest_indices(level):
            self._account(level, self.entry(pfn, i), -1)
        if level == 2:
            for i in range(A.HOLE_PDE, ENTRIES):     # nothing of the monitor's stays behind
                self._set_entry(pfn, i, 0)
        del self.level[pfn]
        self.stats[f"unpinned_l{level}"] += 1

    def update(self, ptr: int, val: int) -> None:
        """One validated store into a pinned table (HC_MMU_UPDATE's request)."""
        val &= 0xFFFFFFFF
        if ptr & 3:
            raise PvError(A.EINVAL, "a misaligned entry address")
        pfn, index = ptr >> 12, (ptr & 0xFFF) >> 2
        level = self.level.get(pfn)
        if level is None:
            raise PvError(A.EINVAL, "an entry address outside every pinned table")
        if level == 2 and index >= A.HOLE_PDE:
            raise PvError(A.EPERM, "an entry of the monitor's hole")
        bad = self.check_l1(val) if level == 1 else self.check_l2(val)
        if bad is not None:
            raise PvError(*bad)
        old = self.entry(pfn, index)
        self._account(level, old, -1)
        self._account(level, val, +1)
        self._set_entry(pfn, index, val)
        self.stats[f"l{level}_updates"] += 1

    def check_base(self, pa: int) -> int:
        """The frame of a new page directory (HC_NEW_BASEPTR)."""
        if pa & (PAGE - 1) or self.level.get(pa >> 12) != 2:
            raise PvError(A.EINVAL, "a base pointer that is not a pinned directory")
        return pa

    def pte_address(self, base: int, va: int) -> int:
        """Guest-physical address of the entry mapping `va` in directory `base`."""
        if va >= A.HOLE:
            raise PvError(A.EINVAL, "a virtual address in the monitor's hole")
        pde = self.entry(base >> 12, va >> 22)
        if not pde & P:
            raise PvError(A.EINVAL, "a virtual address whose directory entry is not present")
        return (pde & ~0xFFF) + ((va >> 12) & 0x3FF) * 4
