"""Shadow page tables: the page tables the real CPU walks, derived from the
guest's (guest virtual -> machine), kept in the monitor's frame pool.

* Filled on demand: a shadow directory starts empty but for the monitor's
  hole; a real #PF the guest's tables allow is a hidden fault, filled here.
* Guest page tables are traced: every guest frame a shadow table derives
  from is mapped read-only in every shadow table, so each guest write to a
  PDE/PTE traps; the monitor lets the write happen (single-step) and mirrors
  it into the shadows (`mirror`).
* Accessed and dirty bits stay truthful: a shadow entry is present only if
  the guest entry's A bit is set, and writable only if its D bit is set;
  the fill's guest walk sets them when the access really happens.
* Views (ring compression, 0/3/3): the guest kernel runs at CPL 3 too, so
  its supervisor pages are user pages in the kernel view, and absent from
  the user view the monitor switches to whenever the guest enters user mode.
  In the 0/1/3 model one view serves both (ring 1 is supervisor).
* Guest paging off: an identity view of guest RAM.
* Device MMIO (`trap_mmio`, trap and bt): a guest page that maps physical
  memory beyond RAM (the xAPIC, the I/O APIC, the HPET) is never present
  in a shadow, so every access #PFs into the monitor, which emulates it
  against the device (device_access.py), as a monitor on silicon must: the
  host's physical address there is not the guest's device.
Shadow directories are cached per (guest directory, view), so CR3 switches
between known address spaces cost no refill; shadow page tables are shared
between directories that share a guest page table.
"""
from __future__ import annotations

from ringvisor.monitors.common import region as R
from ringvisor.monitors.common.guest_mmu import A, D, P, PS, RW, US, ReservedAccess, VirtualFault
from ringvisor.monitors.common.real_tables import monitor_pde
from ringvisor.monitors.common.vcpu import CR4_PSE

KERNEL_VIEW, USER_VIEW = 0, 1
PHYS = "phys"                       # key of the identity view used while guest paging is off
MAX_DIRECTORIES = 24                # cached shadow directories per view
FLOOD = 64                          # traced writes without a walk through the frame: stop tracing


class Table:
    """A shadow directory (level 2) or page table (level 1) and what it mirrors."""
    __slots__ = ("frame", "key", "guest", "level", "parents")

    def __init__(self, frame: int, key, guest: int | None, level: int):
        self.frame, self.key, self.guest, self.level = frame, key, guest, level
        self.parents: set[tuple["Table", int]] = set()      # (directory, index) linking a page table


class ShadowMmu:
    def __init__(self, region: R.MonitorRegion, vcpu, gmmu, ring: int, stats,
                 linear_top: int | None = None, trap_mmio: bool = False):
        """`linear_top`: where the guest's linear space ends; above it is the
        monitor's hole (a deprivileged guest shares its address space with the
        monitor: by default the region's linear base). The hw monitor's guest
        has all 4 GiB (1 << 32): VM exits switch address spaces."""
        self.region, self.vcpu, self.gmmu, self.stats = region, vcpu, gmmu, stats
        if linear_top is None:
            linear_top = region.linear_base
        self.linear_top, self.top_pde = linear_top, linear_top >> 22
        self.trap_mmio = trap_mmio                   # device pages stay absent (device_access.py)
        self.mm = region.mm
        self.views = 2 if ring == 3 else 1
        self.compress = ring == 3
        self.directories: dict = {}                  # (guest PD or PHYS, view) -> Table
        self.page_tables: dict = {}                  # (guest PT, view) / ("big", gpd, i, view) / (PHYS, i, view)
        self.derived: dict[int, set[Table]] = {}     # traced guest frame -> shadow tables mirroring it
        self.rmap: dict[int, set[int]] = {}          # guest frame -> writable shadow PTEs mapping it
        self.writes: dict[int, int] = {}             # traced guest frame -> writes since last walk
        self.tables: dict[int, Table] = {}           # shadow frame -> its table
        self.current: Table | None = None
        self.need_flush = False
        self.protected: set[int] = set()             # guest frames kept read-only for a client (bt: code)
        self.descriptor_frames: set[int] = set()     # guest frames holding the guest's GDT (gdt_watch.py)

    # --- which directory the real CPU uses -------------------------------------------
    def view(self) -> int:
        return USER_VIEW if self.views == 2 and self.vcpu.cpl == 3 else KERNEL_VIEW

    def activate(self) -> int:
        """Select the shadow directory for the virtual CR3/paging/view; returns
        the real CR3 to load."""
        v = self.vcpu
        key = ((v.cr3 & 0xFFFFF000) if v.paging else PHYS, self.view())
        d = self.directories.get(key)
        if d is None:
            d = self._new_directory(key)
        else:
            self.directories[key] = self.directories.pop(key)      # most recently used last
        if d.guest is not None:
            self.writes[d.guest] = 0
        self.current = d
        return d.frame

    def _new_directory(self, key) -> Table:
        if len(self.directories) >= MAX_DIRECTORIES * self.views:
            for k, old in list(self.directories.items()):
                if old is not self.current:
                    self._drop_directory(old)
                    break
        frame = self._alloc()
        if self.top_pde < 1024:
            self.region.write_u32(frame + 4 * self.top_pde, monitor_pde(self.region))
        guest = key[0] if key[0] != PHYS else None
        d = Table(frame, key, guest, 2)
        self.directories[key] = d
        self.tables[frame] = d
        if guest is not None:
            self._trace(guest, d)
        self.stats["directories_created"] += 1
        return d

    # --- hidden faults -------------------------------------------------------------------------
    def fill(self, lin: int, write: bool, user: bool) -> tuple[int, int] | None:
        """Resolve a real #PF at `lin` the guest's tables may allow. Returns
        (shadow PTE address, guest frame written) when the access is a write the
        shadow must keep read-only (a traced page table, or a supervisor
        write to a read-only page with CR0.WP=0): the caller lets that one
        write through by single-stepping. Raises VirtualFault when the guest
        itself would fault."""
        if lin >= self.linear_top:
            raise VirtualFault(14, (2 if write else 0) | (4 if user else 0), lin)
        phys = self.gmmu.walk(lin, write, user)
        if self.region.contains(phys):
            how = "its page tables map" if self.vcpu.paging else "with paging off, is"
            raise ReservedAccess(f"the guest accessed linear {lin:#x}, which {how} physical "
                                 f"{phys:#x}: memory the memory map reserves for the monitor")
        if self.trap_mmio and phys >= self.region.end:
            raise DeviceAccess(lin, phys, write)
        pdi, pti = lin >> 22, (lin >> 12) & 0x3FF
        pt = self._link(self.current, pdi)
        pte_addr = pt.frame + 4 * pti
        self._set_pte(pte_addr, self._derive(pt, pti))
        self.stats["fills"] += 1
        for walked in (self.current.guest, pt.guest):       # in use as page tables: keep tracing
            if walked is not None:
                self.writes[walked] = 0
        if write and not self.mm[pte_addr] & RW:
            return pte_addr, phys & 0xFFFFF000
        return None

    def device_pte(self, lin: int) -> tuple[int, int]:
        """(shadow PTE address, the entry the guest's tables allow) for the
        device page at `lin`, after `fill` raised DeviceAccess for it: the
        stepper maps it for one instruction only."""
        pdi, pti = lin >> 22, (lin >> 12) & 0x3FF
        pt = self._link(self.current, pdi)
        return pt.frame + 4 * pti, self._derive(pt, pti, device=True)

    def _link(self, d: Table, pdi: int) -> Table:
        """The shadow page table under entry `pdi` of directory `d`, created
        and linked if needed."""
        key = self._pt_key(d, pdi)
        pt = self.page_tables.get(key)
        if pt is None:
            frame = self._alloc()
            guest = key[0] if isinstance(key[0], int) else None
            pt = Table(frame, key, guest, 1)
            self.page_tables[key] = pt
            self.tables[frame] = pt
            if guest is not None:
                self._trace(guest, pt)
                self.writes[guest] = 0
            self.stats["page_tables_created"] += 1
        if (d, pdi) not in pt.parents:
            old = self.region.read_u32(d.frame + 4 * pdi)
            if old & P:
                self._unlink(d, pdi)
            pt.parents.add((d, pdi))
        self.region.write_u32(d.frame + 4 * pdi, pt.frame | self._pde_flags(d, pdi))
        return pt

    def _pt_key(self, d: Table, pdi: int):
        view = d.key[1]
        if d.guest is None:
            return (PHYS, pdi, view)
        gpde = self._guest_u32(d.guest + 4 * pdi)
        if gpde & PS and self.vcpu.cr4 & CR4_PSE:
            return ("big", d.guest, pdi, view)
        return (gpde & 0xFFFFF000, view)

    def _pde_flags(self, d: Table, pdi: int) -> int:
        if d.guest is None:
            return P | RW | US | A
        gpde = self._guest_u32(d.guest + 4 * pdi)
        us = US if (self.compress and d.key[1] == KERNEL_VIEW) else gpde & US
        return P | A | (gpde & RW) | us

    def _derive(self, pt: Table, i: int, device: bool = False) -> int:
        """Shadow PTE i of `pt` from the guest's entry (0 = not present);
        a device page only when `device` (or MMIO is not trapped)."""
        hide_devices = self.trap_mmio and not device
        key, view = pt.key, pt.key[-1]
        if key[0] == PHYS:
            frame = ((key[1] << 22) | (i << 12))
            if self.region.contains(frame) or (hide_devices and frame >= self.region.end):
                return 0
            kept = frame in self.protected or frame in self.descriptor_frames
            return frame | P | US | A | (0 if kept else RW | D)
        if key[0] == "big":
            gpde = self._guest_u32(key[1] + 4 * key[2])
            g = (gpde & 0xFFC00000 | i << 12) | (gpde & 0xFFF & ~PS)
        else:
            g = self._guest_u32(key[0] + 4 * i)
        if not g & P or not g & A:
            return 0
        frame = g & 0xFFFFF000
        if self.region.contains(frame) or (hide_devices and frame >= self.region.end):
            return 0
        if self.compress:
            if view == USER_VIEW and not g & US:
                return 0
            us = US
        else:
            us = g & US
        writable = g & RW and g & D and frame not in self.derived and frame not in self.protected \
            and frame not in self.descriptor_frames
        return frame | P | A | us | ((RW | D) if writable else 0)

    def _set_pte(self, addr: int, new: int) -> None:
        old = self.region.read_u32(addr)
        if old == new:
            return
        if old & RW:
            s = self.rmap.get(old & 0xFFFFF000)
            if s:
                s.discard(addr)
        if new & RW:
            self.rmap.setdefault(new & 0xFFFFF000, set()).add(addr)
        self.region.write_u32(addr, new)

    # --- tracing the guest's page tables --------------------------------------------------------
    def _trace(self, frame: int, table: Table) -> None:
        tables = self.derived.get(frame)
        if tables is None:
            tables = self.derived[frame] = set()
            self._write_protect(frame)
            self.stats["frames_traced"] += 1
        tables.add(table)

    def _write_protect(self, frame: int) -> None:
        """Make every writable shadow mapping of `frame` read-only (later
        fills keep it so while the frame is traced or protected)."""
        for addr in self.rmap.pop(frame, ()):
            self.region.write_u32(addr, self.region.read_u32(addr) & ~(RW | D))
            self.need_flush = True

    def protect(self, frame: int) -> None:
        """Keep every shadow mapping of guest frame `frame` read-only (the
        binary translator's code pages: a write must reach the monitor)."""
        if frame in self.protected:
            return
        self.protected.add(frame)
        self._write_protect(frame)

    def unprotect(self, frame: int) -> None:
        """Writable again at the next fill (read-only entries fault once)."""
        self.protected.discard(frame)

    def watch_descriptors(self, frame: int) -> None:
        """Keep guest frame `frame` read-only: it holds the guest's GDT."""
        if frame not in self.descriptor_frames:
            self.descriptor_frames.add(frame)
            self._write_protect(frame)

    def unwatch_descriptors(self, frame: int) -> None:
        self.descriptor_frames.discard(frame)

    def traced(self, phys: int) -> bool:
        return (phys & 0xFFFFF000) in self.derived

    def mirror(self, frame: int, lo: int, hi: int) -> None:
        """The guest wrote bytes [lo, hi) of traced frame `frame`: re-derive
        the shadow entries those bytes belong to."""
        tables = self.derived.get(frame)
        if not tables:
            return
        self.stats["pte_writes_mirrored"] += 1
        n = self.writes.get(frame, 0) + 1
        self.writes[frame] = n
        if n > FLOOD and not any(self._in_use(t) for t in tables):
            self._untrace(frame)
            return
        for i in range(lo >> 2, (hi + 3) >> 2):
            for t in list(tables):
                if t.level == 2:
                    self._mirror_pde(t, i)
                else:
                    self._set_pte(t.frame + 4 * i, self._derive(t, i))

    def _mirror_pde(self, d: Table, i: int) -> None:
        if i >= self.top_pde:
            return
        old = self.region.read_u32(d.frame + 4 * i)
        if old & P:
            self._unlink(d, i)
        gpde = self._guest_u32(d.guest + 4 * i)
        if gpde & P and gpde & A and (d.key[1] == KERNEL_VIEW or gpde & US or not self.compress):
            self._link(d, i)

    def _in_use(self, t: Table) -> bool:
        """Part of the address space the real CPU runs on right now?"""
        if t.level == 2:
            return t is self.current
        return any(d is self.current for d, _ in t.parents)

    def _untrace(self, frame: int) -> None:
        """Stop tracing a frame the guest floods with writes while no live
        address space uses it (a freed page directory, most likely, cached
        here): drop the shadows derived from it."""
        tables = self.derived.get(frame, set())
        for t in list(tables):
            if t.level == 2:
                self._drop_directory(t)
            else:
                self._drop_page_table(t)
        self.derived.pop(frame, None)
        self.writes.pop(frame, None)
        self.stats["frames_untraced_flood"] += 1

    # --- dropping shadows ------------------------------------------------------------------------
    def _unlink(self, d: Table, pdi: int) -> None:
        old = self.region.read_u32(d.frame + 4 * pdi)
        self.region.write_u32(d.frame + 4 * pdi, 0)
        pt = self.tables.get(old & 0xFFFFF000)
        if pt is not None:
            pt.parents.discard((d, pdi))
            if not pt.parents:
                self._drop_page_table(pt)

    def _drop_page_table(self, pt: Table) -> None:
        for d, pdi in list(pt.parents):
            self.region.write_u32(d.frame + 4 * pdi, 0)
        pt.parents.clear()
        entries = memoryview(self.mm)[pt.frame:pt.frame + R.PAGE].cast("I")
        for i, e in enumerate(entries):
            if e & RW:
                self._set_pte(pt.frame + 4 * i, 0)
        entries.release()
        self.page_tables.pop(pt.key, None)
        self._forget(pt)
        self.need_flush = True

    def _drop_directory(self, d: Table) -> None:
        for i in range(self.top_pde):
            if self.region.read_u32(d.frame + 4 * i) & P:
                self._unlink(d, i)
        self.directories.pop(d.key, None)
        self._forget(d)
        self.stats["directories_dropped"] += 1

    def _forget(self, t: Table) -> None:
        self.tables.pop(t.frame, None)
        if t.guest is not None:
            tables = self.derived.get(t.guest)
            if tables is not None:
                tables.discard(t)
                if not tables:
                    del self.derived[t.guest]
                    self.writes.pop(t.guest, None)
        self.region.free_frame(t.frame)

    def reset(self) -> None:
        """Drop every shadow (the pool ran dry, or guest paging was switched)."""
        for d in list(self.directories.values()):
            self._drop_directory(d)
        for pt in list(self.page_tables.values()):
            self._drop_page_table(pt)
        self.current = None
        self.need_flush = True
        self.stats["resets"] += 1

    # --- helpers -----------------------------------------------------------------------------------
    def _alloc(self) -> int:
        frame = self.region.alloc_frame()
        if frame is None:
            raise PoolExhausted()
        return frame

    def _guest_u32(self, phys: int) -> int:
        return int.from_bytes(self.mm[phys:phys + 4], "little")

    def lookup(self, lin: int) -> int | None:
        """Physical address of the current shadow PTE for `lin`, if linked."""
        pde = self.region.read_u32(self.current.frame + 4 * (lin >> 22))
        if not pde & P:
            return None
        return (pde & 0xFFFFF000) + 4 * ((lin >> 12) & 0x3FF)


class DeviceAccess(Exception):
    """A guest access the guest's tables allow to device memory (beyond RAM):
    the monitor emulates it (device_access.py)."""

    def __init__(self, lin: int, phys: int, write: bool):
        super().__init__(f"device access at linear {lin:#x} (physical {phys:#x})")
        self.lin, self.phys, self.write = lin, phys, write


class PoolExhausted(Exception):
    """No free frame for a shadow table: the caller resets and retries."""
