"""Knowing the guest's CS cache across a far transfer to the same selector.

A trap frame carries CS's selector, not its hidden cache, so the trap monitor
keeps the cache it loaded at the last resume and assumes it is still in force
while the selector is the same (trap/monitor.py `_real_cache`). That holds
until the guest loads a GDT in which its current selector names a different
descriptor: then a far JMP/CALL/RET or IRET to the same selector number makes
the CPU read the new descriptor (SDM vol. 3 3.4.3), and nothing shows it in
the next frame. Linux does exactly this (LGDT, then `ljmp $__KERNEL_CS`).

So after an emulated LGDT that leaves CS "non-reversible" (its cache differs
from what its selector now names), the monitor single-steps the guest until a
far transfer has run (from then on the cache is the table's) or the monitor
loads CS itself (emulation, delivery). bt needs none of this: every far
transfer of a translated kernel is a callout that loads CS through the monitor.
"""
from __future__ import annotations

from ringvisor.cpu_state import Segment

# Table rows whose execution loads CS from a descriptor table without trapping
# (at the deprivileged kernel's own ring).
FAR_TRANSFERS = frozenset({"JMP Ap", "JMP Mp", "CALL Ap", "CALL Mp", "RETF", "RETF Iw", "IRET"})


def same_descriptor(a: Segment, b: Segment) -> bool:
    """The caches describe the same segment (the accessed bit aside)."""
    return (a.base, a.limit, a.type | 1, a.dpl, a.db, a.s, a.present) == \
        (b.base, b.limit, b.type | 1, b.dpl, b.db, b.s, b.present)


class CsReloadWatch:
    def __init__(self):
        self.check = False          # a GDT was loaded: compare at the next resume
        self.armed = False          # CS's cache is not what its selector names now
        self.stepping_far = None    # (EIP, selector) of a far transfer being single-stepped

    def gdt_loaded(self) -> None:
        self.check = True

    def cs_loaded_by_monitor(self) -> None:
        self.armed = False
        self.stepping_far = None

    def before_resume(self, mon, st) -> bool:
        """True when the next guest instruction must be single-stepped."""
        self.stepping_far = None
        if self.check:
            self.check = False
            self.armed = not same_descriptor(st.cs, mon.table_cache(st.cs.selector))
        if not self.armed:
            return False
        try:
            ins = mon.fetch_decode(st)
        except Exception:           # a fault fetching it traps anyway, and is handled then
            return True
        if ins.row is not None and ins.row.text in FAR_TRANSFERS:
            self.stepping_far = (st.eip, st.cs.selector)
        return True

    def reloaded(self, selector: int, eip: int) -> bool:
        """At the trap after a step: did the stepped far transfer run (so the
        CPU loaded CS from the table)? It did unless the frame still points at it."""
        far, self.stepping_far = self.stepping_far, None
        if far is None or far == (eip, selector):
            return False
        self.armed = False
        return True
