"""A guest access beyond a segment limit the monitor cut, within the
guest's own limit: let that one instruction through.

Every guest segment is cut below the monitor's region (shadow_gdt.py). An
offset beyond the cut is not always an access to the region: glibc's i386
TLS reads `%gs:0xffffffac`, a negative offset from the thread control block
that wraps around 4 GiB to just below it (legal natively: the TLS segment
has a 4 GiB limit). With the cut the CPU raises #GP(0) instead. Xen's
truncated segments met the same (Linux's "4gb seg fixup"; Debian shipped a
glibc without negative TLS offsets, /lib/i686/nosegneg, for Xen guests).

Here the monitor decodes the faulting instruction, computes where its
memory operand really goes with the guest's own descriptor, and, when that
is inside the guest's limit and below the monitor's region (with room for
the widest operand), loads the real segment register with the guest's own
limit for that one instruction, single-stepped; the cut is restored at the
step's end. Anything else is the guest's own #GP.
"""
from __future__ import annotations

from ringvisor.cpu_state import Segment
from ringvisor.monitors.common.delivery import guest_descriptor
from ringvisor.monitors.common.guest_mmu import VirtualFault
from ringvisor.monitors.common.operands import SEGS, effective

WIDEST = 512                      # bytes one memory operand may span (FXSAVE's area)


def lifted_cache(mon, st, ins) -> tuple[str, Segment] | None:
    """(segment register, its cache with the guest's own limit) when this
    #GP(0) is an access beyond the cut the monitor may let through; None if
    it is the guest's own #GP."""
    if ins.row is None or ins.ud or not ins.mem:
        return None
    seg, off = effective(ins, st)
    name = SEGS[seg]
    real = getattr(st, name)
    if real.unusable or not real.s or real.type & 8 or real.type & 4 or off <= real.limit:
        return None                          # code, expand-down, or not beyond the cut
    try:
        own = guest_descriptor(mon, real.selector).segment(real.selector)
    except VirtualFault:
        return None
    if own.base != real.base or off > own.limit:
        return None                          # beyond the guest's own limit: its #GP
    lin = (own.base + off) & 0xFFFFFFFF
    if lin + WIDEST > mon.region.linear_base:
        return None                          # it would reach the monitor's region
    lifted = real.copy()
    lifted.limit, lifted.g = own.limit, own.g
    return name, lifted
