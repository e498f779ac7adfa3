"""The guest's GDT after LGDT: the frames it lies in are kept read-only in
the shadow page tables, so every guest store to a descriptor reaches the
monitor (a #PF, then the store single-stepped by stepper.py), which
rewrites that descriptor in the real GDT (shadow_gdt.py) before the guest
can load it.

An OS that writes its GDT only before LGDT needs none of this; Linux
writes it all the time: its three TLS slots at every context switch
(load_TLS), the ESPFIX stack segment's base, the per-CPU segment at boot.
VMware's monitor traced the GDT the same way.

The frames are found by walking the guest's page tables at LGDT and again
whenever the virtual CPU's paging is switched on or off (the GDT's linear
address then names other frames); a guest that remaps the GDT's pages
without either is not followed (none does: the GDT lies in the kernel's
own, global, mapping).
"""
from __future__ import annotations

from ringvisor.monitors.common.guest_mmu import VirtualFault

PAGE = 0x1000


class GdtWatch:
    def __init__(self, shadow, gmmu, gdt):
        self.shadow, self.gmmu, self.gdt = shadow, gmmu, gdt
        self.base, self.size = 0, 0
        self.frames: dict[int, list[int]] = {}          # guest frame -> linear pages of the GDT in it

    def watch(self, base: int, limit: int) -> None:
        """The GDT is [base, base + limit] (linear): watch its frames."""
        for frame in self.frames:
            self.shadow.unwatch_descriptors(frame)
        self.frames = {}
        self.base, self.size = base, limit + 1
        page = base & ~(PAGE - 1)
        while page < base + self.size:
            try:
                frame = self.gmmu.walk(page, False, False, set_bits=False) & ~(PAGE - 1)
            except VirtualFault:                        # not mapped now: no descriptor there to load
                frame = None
            if frame is not None:
                self.frames.setdefault(frame, []).append(page)
                self.shadow.watch_descriptors(frame)
            page += PAGE

    def rewatch(self) -> None:
        """The linear-to-physical mapping changed (paging on or off)."""
        if self.size:
            self.watch(self.base, self.size - 1)

    def written(self, frame: int, lo: int, hi: int) -> None:
        """Bytes [lo, hi) of `frame` changed: rewrite the descriptors they touch."""
        for page in self.frames.get(frame, ()):
            start = max(page + lo - self.base, 0) & ~7
            end = min(page + hi - self.base, self.size)
            if start < end:
                end = min((end + 7) & ~7, self.size)
                try:
                    data = self.gmmu.read(self.base + start, end - start, what="the guest's GDT")
                except VirtualFault:                    # a neighbouring page unmapped: nothing to load
                    continue
                self.gdt.update(start, data)
