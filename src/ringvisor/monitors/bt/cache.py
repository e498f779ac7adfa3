"""The translation cache (TC): translated guest kernel code in the monitor's
region (region.TC, reached by translated code through the execute-only
ring-1 segment real_tables.TC_CODE), and the tables that tie it to the
guest:

* `at`: guest EIP -> cache address, for every translated guest instruction
  (not only block entries): translated code copies instructions one for one,
  so resuming in the middle of a block is exact;
* `back`: cache address -> guest EIP, for every instruction the cache holds
  (copied ones, rewritten sequences, callout sites, exit stubs): a trap at
  any cache EIP maps to the guest instruction it stands for, or for the
  second half of a rewritten sequence to the state the first half reached
  (after `push <return EIP>` of a CALL: at the call's target);
* `sites`: cache address of a callout (a one-byte HLT) -> what it stands for.

Chaining: a direct jump to a guest target is a `jmp rel32` that points at the
target's translation when there is one, else at a one-byte exit stub (a
"chain" callout) after the block; when the target is translated (ahead of
time, or the first time the stub runs) the jump is patched. Every jump keeps its stub, so
when the target block is invalidated the jump is pointed back at it
(unchained) instead of flushing the cache.

Blocks are dropped one by one when a guest frame they were translated from
is written (`invalidate_frame`); the whole cache is flushed only when it is
full or a translated page is mapped elsewhere. Space is not reused before a
flush (a bump allocator).
"""
from __future__ import annotations

from ringvisor.monitors.common import region as R

HLT = 0xF4
CHAIN = "chain"


class Site:
    __slots__ = ("kind", "guest", "field", "block", "tc")

    def __init__(self, kind: str, guest: int, field: int | None, block: "Block", tc: int):
        self.kind, self.guest, self.field, self.block, self.tc = kind, guest, field, block, tc


class Block:
    __slots__ = ("start", "end", "entry", "guests", "tcs", "frames", "pages", "spans", "incoming",
                 "alive", "insns")

    def __init__(self, entry: int):
        self.entry = entry
        self.start = self.end = 0
        self.guests: list[int] = []
        self.tcs: list[int] = []
        self.frames: set[int] = set()
        self.pages: dict[int, int] = {}            # guest linear page -> guest frame at translation
        self.spans: dict[int, list[int]] = {}      # guest frame -> [lo, hi) of the bytes translated
        self.incoming: list[tuple["Block", int, int]] = []     # (source, rel32 field, its stub)
        self.alive = True
        self.insns = 0


class Draft:
    """A block being translated, in offsets from its start."""

    def __init__(self, entry: int):
        self.block = Block(entry)
        self.code = bytearray()
        self.back: dict[int, int] = {}             # offset -> guest EIP
        self.at: dict[int, int] = {}               # guest EIP -> offset
        self.sites: dict[int, tuple[str, int]] = {}
        self.fixups: dict[int, str] = {}
        self.links: list[tuple[int, int]] = []     # (rel32 field offset, guest target)
        self.returns: list[int] = []               # guest return EIPs its CALLs push

    def mark(self, guest: int) -> int:
        off = len(self.code)
        self.back[off] = guest
        return off

    def jump(self, opcode: bytes, target: int, stands_for: int) -> None:
        """`opcode rel32` to guest `target`; a trap just before it is at `stands_for`."""
        self.mark(stands_for)
        self.code += opcode
        self.links.append((len(self.code), target))
        self.code += bytes(4)

    def callout(self, kind: str, guest: int) -> None:
        self.sites[self.mark(guest)] = (kind, guest)
        self.code.append(HLT)


class TranslationCache:
    def __init__(self, region: R.MonitorRegion, offset: int, size: int, on_unused=None):
        """The cache at region offset `offset`, `size` bytes."""
        self.region = region
        self.base, self.phys, self.size = region.linear(offset), region.physical(offset), size
        self.on_unused = on_unused or (lambda frame: None)     # a frame no block comes from any more
        self.flushes = 0
        self.late_links = 0                        # jumps chained when their target got translated
        self.reset()

    def reset(self) -> None:
        self.top = 0
        self.at: dict[int, int] = {}
        self.owner: dict[int, Block] = {}
        self.back: dict[int, int] = {}
        self.sites: dict[int, Site] = {}
        self.by_frame: dict[int, set[Block]] = {}
        self.fixups: dict[int, str] = {}           # cache address -> how a trap there completes (bt_returns)
        self.pending: dict[int, list[Site]] = {}   # guest target -> exit stubs still waiting for it
        self.patched: dict[int, int] = {}          # callout patched over a copy -> the byte it replaced
        self.blocks = 0

    # --- space --------------------------------------------------------------------------
    def room(self, n: int) -> bool:
        return self.top + n <= self.size

    def flush(self) -> None:
        frames = list(self.by_frame)
        self.reset()
        self.flushes += 1
        for f in frames:
            self.on_unused(f)

    @property
    def used(self) -> int:
        return self.top

    # --- installing a block -----------------------------------------------------------------
    def install(self, d: Draft) -> Block:
        """Place a translated block (body, then one exit stub per jump) and
        resolve its jumps: to a translation when the target has one."""
        b = d.block
        stubs = []
        for field, target in d.links:
            stubs.append(len(d.code))
            d.sites[d.mark(target)] = (CHAIN, target)
            d.code.append(HLT)
        start = self.base + self.top
        b.start, b.end = start, start + len(d.code)
        self.region.write_bytes(self.phys + self.top, bytes(d.code))
        self.top += len(d.code)
        for off, g in d.back.items():
            self.back[start + off] = g
            b.tcs.append(start + off)
        for g, off in d.at.items():
            self.at[g] = start + off
            self.owner[g] = b
            b.guests.append(g)
        for (field, target), stub in zip(d.links, stubs):
            site_field = start + field
            self.sites[start + stub] = Site(CHAIN, target, site_field, b, start + stub)
            local = d.at.get(target)
            if local is not None:
                self.write_rel32(site_field, start + local)
            elif target in self.at and self.owner[target] is not b:
                self.link(site_field, target, b, start + stub)
            else:
                self.write_rel32(site_field, start + stub)
                self.pending.setdefault(target, []).append(self.sites[start + stub])
        for g in d.at:                              # jumps that were waiting for these guest EIPs
            for site in self.pending.pop(g, ()):
                if site.block.alive and site.block is not b and self.points_at(site.field, site.tc):
                    self.link(site.field, g, site.block, site.tc)
                    self.late_links += 1
        for off, kind in d.fixups.items():
            self.fixups[start + off] = kind
            b.tcs.append(start + off)
        for off, (kind, g) in d.sites.items():
            if kind != CHAIN:
                self.sites[start + off] = Site(kind, g, None, b, start + off)
        for f in b.frames:
            self.by_frame.setdefault(f, set()).add(b)
        self.blocks += 1
        return b

    def patch_callout(self, tc: int, kind: str, guest: int) -> None:
        """Turn the copied instruction at cache address `tc` (guest `guest`)
        into a callout in place: its first byte becomes the HLT, the rest is
        never reached (the callout resumes at the next guest instruction)."""
        at = self.phys + (tc - self.base)
        self.patched[tc] = self.region.mm[at]
        self.region.write_bytes(at, bytes([HLT]))
        self.sites[tc] = Site(kind, guest, None, self.owner[guest], tc)

    def unpatch(self, tc: int) -> None:
        """The copy at `tc` again, not the callout patched over it."""
        self.region.write_bytes(self.phys + (tc - self.base), bytes([self.patched.pop(tc)]))
        self.sites.pop(tc, None)

    def link(self, field: int, target: int, source: Block, stub: int) -> None:
        """Point the jump at `field` to the translation of guest `target`."""
        self.write_rel32(field, self.at[target])
        self.owner[target].incoming.append((source, field, stub))

    def unwait(self, site: Site) -> None:
        waiting = self.pending.get(site.guest)
        if waiting and site in waiting:
            waiting.remove(site)

    def points_at(self, field: int, dest: int) -> bool:
        rel = self.region.read_u32(self.phys + (field - self.base))
        return (field + 4 + rel) & 0xFFFFFFFF == dest

    def write_rel32(self, field: int, dest: int) -> None:
        rel = (dest - (field + 4)) & 0xFFFFFFFF
        self.region.write_u32(self.phys + (field - self.base), rel)

    # --- lookups ----------------------------------------------------------------------------
    def contains(self, tc: int) -> bool:
        return self.base <= tc < self.base + self.size

    def guest_eip(self, tc: int) -> int | None:
        return self.back.get(tc)

    # --- invalidation -------------------------------------------------------------------------
    def invalidate_frame(self, frame: int, lo: int = 0, hi: int = 0x1000) -> int:
        """Drop every block translated from bytes [lo, hi) of guest frame
        `frame` (all of it by default); returns how many."""
        blocks = self.by_frame.get(frame)
        if not blocks:
            return 0
        hit = [b for b in blocks if b.spans[frame][0] < hi and lo < b.spans[frame][1]]
        for b in hit:
            self.drop(b)
        return len(hit)

    def drop(self, b: Block) -> None:
        b.alive = False
        for g in b.guests:
            if self.owner.get(g) is b:
                del self.owner[g]
                del self.at[g]
        for t in b.tcs:
            self.back.pop(t, None)
            self.sites.pop(t, None)
            self.fixups.pop(t, None)
            self.patched.pop(t, None)
        for source, field, stub in b.incoming:
            if source.alive:
                self.write_rel32(field, stub)          # unchain: back to the exit stub
                site = self.sites.get(stub)
                if site is not None:
                    self.pending.setdefault(site.guest, []).append(site)
        b.incoming.clear()
        for f in b.frames:
            s = self.by_frame.get(f)
            if s is not None:
                s.discard(b)
                if not s:
                    del self.by_frame[f]
                    self.on_unused(f)
        self.blocks -= 1
