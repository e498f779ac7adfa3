"""The real GDT: the guest's descriptors, rewritten for a deprivileged guest,
in two views, plus the monitor's own entries at the top of the table.

Guest selectors keep their indices, so the guest's selector values stay
valid. The rewriting (done at every LGDT the guest executes):

* limits are cut below the region's linear base (0xFFC00000 under trap
  and bt), so no guest segment reaches the monitor's region (in ring 1 that region's supervisor pages are otherwise
  reachable; VirtualBox's 0/1/3 model relied on the same cut);
* kernel view (virtual CPL 0): DPL 0 becomes the real ring of the guest
  kernel (1, or 3 with ring compression), and the guest's ring-3 code
  segments are marked not present, so every transfer to guest user mode
  (IRET, far RET) faults into the monitor, which must switch views and
  restore the virtual IF the frame carries (an IRET in ring 1 cannot);
* user view (virtual CPL 3): descriptors as the guest wrote them (DPL 0
  stays 0), so user code loading a kernel selector faults exactly as it
  would natively;
* system descriptors (the guest's TSS, LDT, gates) are left out: the real
  TR is the monitor's TSS and descriptor-table registers are virtual.

Descriptors are written with the accessed bit set so the CPU never writes
to the real GDT. Descriptors the guest writes after its LGDT (Linux: the TLS
slots at every context switch, the ESPFIX stack segment) reach `update`
through the write watch of gdt_watch.py.
"""
from __future__ import annotations

from ringvisor.monitors.common import region as R
from ringvisor.monitors.common.delivery import Unsupported
from ringvisor.monitors.common.descriptors import decode, is_null, with_fields
from ringvisor.monitors.common.real_tables import FIRST_MONITOR_SELECTOR, monitor_descriptors

KERNEL_VIEW, USER_VIEW = 0, 1


class ShadowGdt:
    def __init__(self, region: R.MonitorRegion, ring: int, hide_user_code: bool = True):
        """`hide_user_code`: the kernel view marks ring-3 code not present (trap
        catches returns to user mode that way; bt emulates every far transfer)."""
        self.region, self.ring, self.hide_user_code = region, ring, hide_user_code
        self.bases = {KERNEL_VIEW: region.physical(R.GDT_KERNEL_VIEW),
                      USER_VIEW: region.physical(R.GDT_USER_VIEW)}
        self.loaded_bytes = 0
        self.cut = 0                          # descriptors whose limit was cut at the hole
        self.updated = 0                      # descriptors rewritten after LGDT (update)
        for view, base in self.bases.items():
            for sel, raw in monitor_descriptors(region).items():
                region.write_u64(base + sel, raw)

    def linear_base(self, view: int) -> int:
        return self.region.linear(R.GDT_KERNEL_VIEW if view == KERNEL_VIEW else R.GDT_USER_VIEW)

    def load(self, guest_table: bytes) -> None:
        """Rebuild both views from the bytes of the guest's GDT."""
        if len(guest_table) > FIRST_MONITOR_SELECTOR:
            raise Unsupported(f"the guest's GDT ({len(guest_table)} bytes) reaches selector "
                               f"{FIRST_MONITOR_SELECTOR:#x}, where the monitor's own descriptors live")
        n = len(guest_table) // 8 * 8
        for view, base in self.bases.items():
            out = bytearray(max(n, self.loaded_bytes))
            for off in range(8, n, 8):
                raw = int.from_bytes(guest_table[off:off + 8], "little")
                out[off:off + 8] = self.rewrite(raw, view).to_bytes(8, "little")
            self.region.write_bytes(base, bytes(out))
        self.loaded_bytes = n

    def update(self, offset: int, guest_bytes: bytes) -> None:
        """The guest rewrote descriptors from byte `offset` (a multiple of 8)
        of its loaded GDT: rewrite those in both views."""
        end = min(offset + len(guest_bytes), self.loaded_bytes)
        for off in range(max(offset, 8), end, 8):
            raw = int.from_bytes(guest_bytes[off - offset:off - offset + 8], "little")
            for view, base in self.bases.items():
                self.region.write_u64(base + off, self.rewrite(raw, view))
        self.updated += max(0, (end - max(offset, 8) + 7) // 8)

    def rewrite(self, raw: int, view: int) -> int:
        d = decode(raw)
        if is_null(d) or not d.s:
            return 0
        limit = self._cut_limit(d)
        if limit is None:
            return with_fields(d, present=False)
        raw = with_fields(d, limit=limit) | (1 << 40)          # accessed
        d = decode(raw)
        if view == USER_VIEW:
            return raw
        if d.code and d.dpl == 3 and self.hide_user_code:
            return with_fields(d, present=False)
        return with_fields(d, dpl=self.kernel_dpl(d.dpl))

    def kernel_dpl(self, dpl: int) -> int:
        return 3 if self.ring == 3 else max(dpl, 1)

    def _cut_limit(self, d) -> int | None:
        """The limit that keeps the segment below the hole; None if none can."""
        base, limit, hole = d.base, d.limit, self.region.linear_base
        expand_down = not d.code and d.type & 4
        if expand_down:
            top = 0xFFFFFFFF if d.hi & 0x400000 else 0xFFFF
            return limit if base + top < hole else None
        if base >= hole:
            return None
        if base + limit < hole:
            return limit
        self.cut += 1
        cut = hole - 1 - base
        return cut if cut <= 0xFFFFF else ((cut + 1) & ~0xFFF) - 1

    def descriptor(self, view: int, selector: int):
        """The real descriptor a selector names in a view (for segment caches)."""
        return decode(self.region.read_u64(self.bases[view] + (selector & 0xFFF8)))
