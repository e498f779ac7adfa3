"""Shadow page tables on several vCPUs (`--paging shadow --cpus N`).

Each vCPU has its own shadow tables (its own ShadowMmu, frames from the
one monitor region), as each physical CPU of a first-generation VT-x
monitor walks its own. They stay coherent with the guest's page tables,
whichever vCPU writes them:

- a guest frame one vCPU traces (it derived shadow entries from it) is
  kept read-only in every other vCPU's shadows too (`protect`), so a write
  to it from any vCPU exits;
- the write is let through for one instruction (the monitor trap flag) and
  then mirrored into every vCPU's shadows derived from that frame, and each
  of those vCPUs' tagged translations (its VPID) is flushed, so the stale
  entry is gone before that vCPU next runs: a guest TLB shootdown then finds
  the shadows already right (the shadow is stricter than a TLB, which the
  architecture allows);
- a frame kept read-only for peers that no peer traces any more is made
  writable again at the next write fault there (lazily: a peer's shadows
  are dropped in several places, none of which needs to tell the others).

vCPUs run one at a time (machine/smp.py), so no lock is needed.
"""
from __future__ import annotations

from ringvisor.cpu.vmx.operation import invvpid
from ringvisor.monitors.common.shadow_paging import ShadowMmu


class PeerShadowMmu(ShadowMmu):
    """A vCPU's shadow tables that tell the other vCPUs' which guest frames
    they must keep read-only."""

    def __init__(self, *args, peers=lambda: (), **kwargs):
        super().__init__(*args, **kwargs)
        self.peers = peers            # () -> the other vCPUs' ShadowPaging

    def _trace(self, frame: int, table) -> None:
        new = frame not in self.derived
        super()._trace(frame, table)
        if new:
            for peer in self.peers():
                peer.keep_read_only(frame)

    def traced_by_peer(self, frame: int) -> bool:
        return any(peer.shadow.traced(frame) for peer in self.peers())


def keep_read_only(paging, frame: int) -> None:
    """A peer traces guest frame `frame`: this vCPU's shadows map it
    read-only from now on; its tagged translations go if one was writable."""
    mmu = paging.shadow
    if frame in mmu.protected:
        return
    mmu.protect(frame)
    paging.stats["frames_protected_for_peers"] += 1
    if mmu.need_flush:
        paging.flush()


def mirror_everywhere(paging, frame: int, lo: int, hi: int) -> None:
    """Bytes [lo, hi) of guest frame `frame` changed: every vCPU whose
    shadows derive from it re-derives them and drops its stale translations."""
    for other in (paging, *paging.shadow.peers()):
        mmu = other.shadow
        if mmu.traced(frame):
            mmu.mirror(frame, lo, hi)
            if other is not paging:
                other.stats["pte_writes_mirrored_from_peers"] += 1
                invvpid(other.mon.cpu, 1, other.mon.vmcs["VPID"])
                mmu.need_flush = False


def release_if_unused(paging, frame: int) -> bool:
    """A write fault on `frame`, kept read-only for peers: if no peer
    traces it any more, it is writable again (True: the caller refills)."""
    mmu = paging.shadow
    if frame not in mmu.protected or mmu.traced(frame) or mmu.traced_by_peer(frame):
        return False
    mmu.unprotect(frame)
    paging.stats["frames_released_by_peers"] += 1
    return True
