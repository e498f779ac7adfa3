"""Guest memory access from generated code.

Fast path: for an expand-up segment (a limit below 4 GiB adds one
comparison, a base other than 0 one addition) the linear address is known; a dict per privilege maps a linear page to the host delta
(host index - linear address) of a RAM page the TLB already maps, and an
aligned access is one memoryview index (a misaligned one looks up a key no
page has: `_page`). Write entries exist only for pages
whose TLB write entry exists (so the dirty bit is already set) and that hold
no compiled code (so a fast write never needs the self-modifying-code
check). Everything else (misaligned, TLB miss, MMIO, code pages, non-flat
segments) takes the slow path, `Core.rd`/`Core.wr`, exactly the
interpreter's path, which then learns the page for next time.

The dicts are cleared in place (generated code holds them in locals)
whenever the TLB is flushed or an entry invalidated, and the write dicts
whenever a page starts holding compiled code.
"""
from __future__ import annotations

import sys

M32 = 0xFFFFFFFF
# The memoryview casts read host-endian words: fast paths need a little-endian host.
FAST = sys.byteorder == "little"


class FastPages:
    def __init__(self, cpu):
        self.cpu = cpu
        self.read = ({}, {})          # [user] linear page -> host delta
        self.write = ({}, {})
        self.m8 = memoryview(cpu.mm)
        self.m16 = self.m8.cast("H")
        self.m32 = self.m8.cast("I")

    def clear(self) -> None:
        for d in self.read + self.write:
            d.clear()

    def forget(self, vpn: int) -> None:
        for d in self.read + self.write:
            d.pop(vpn, None)

    def forget_writes(self) -> None:
        for d in self.write:
            d.clear()

    def release(self) -> None:
        for v in (self.m32, self.m16, self.m8):
            v.release()

    def _learn(self, s: int, a: int, write: int) -> None:
        cpu = self.cpu
        lin = (cpu.sbase[s] + a) & M32
        vpn = lin >> 12
        if cpu.pg:
            base = cpu.tlb[cpu.user | write << 1].get(vpn)
            if base is None:
                return
        else:
            base = vpn << 12
        if base + 0x1000 > cpu.ramsize or (write and base >> 12 in cpu.code_pages):
            return
        (self.write if write else self.read)[cpu.user][vpn] = base - (vpn << 12)

    def slow_paths(self):
        """RD(seg, off, w) -> value and WR(seg, off, w, v) -> cpu.smc, for
        generated code: the interpreter's access, then learn the page."""
        cpu, learn = self.cpu, self._learn
        rd, wr = cpu.rd, cpu.wr

        def RD(s, a, w):
            v = rd(s, a, w)
            if FAST:
                learn(s, a, 0)
            return v

        def WR(s, a, w, v):
            wr(s, a, w, v)
            if cpu.smc:
                return True
            if FAST:
                learn(s, a, 1)
            return False
        return RD, WR


def flat(cpu, s: int, write: bool) -> int | None:
    """The segment's highest offset when the fast path applies to it
    (expand-up, readable or writable as needed), else None. A limit below
    4 GiB (a monitor cuts the guest's segments below its own region) costs
    one comparison per access; the slow path then raises the #GP or #SS.
    A base other than 0 (Linux's per-CPU FS) costs one addition."""
    if FAST and cpu.slo[s] == 0 and cpu.shi[s] >= 0xFFF \
            and (cpu.swrite[s] if write else cpu.sread[s]):
        return cpu.shi[s]
    return None


_VIEW = {1: ("M8", 0), 2: ("M16", 1), 4: ("M32", 2)}


def _page(a: str, w: int) -> str:
    """The fast-path dicts' key for a w-byte access at offset `a`: its page,
    with the misaligned low bits above the 20 bits of a page number, so a
    misaligned access finds no entry and takes the slow path (no separate
    alignment test: less code to compile, no branch to run)."""
    return f"{a} >> 12 | ({a} & {w - 1}) << 20" if w > 1 else f"{a} >> 12"


def _guarded(a: str, w: int, top: int, slow: str, body: list[str]) -> list[str]:
    """`body` unless the access ends past offset `top`."""
    if top == M32:
        return body
    return [f"if {a} > {top - w + 1}:", " " + slow, "else:"] + [" " + x for x in body]


def _linear(a: str, base: int) -> tuple[list[str], str]:
    """(lines, local) giving the linear address of offset `a` (the segment
    base is baked into the trace: the cache key holds every segment cache)."""
    if base == 0:
        return [], a
    return [f"la = ({a} + {base}) & 0xFFFFFFFF"], "la"


def load(dst: str, s: int, a: str, w: int, top: int | None, base: int = 0) -> list[str]:
    """Lines setting local `dst` to the w-byte value at s:a (`a` a local);
    `top`: the segment's highest offset if the fast path applies (flat());
    `base`: the segment's base."""
    slow = f"{dst} = RD({s}, {a}, {w})"
    if top is None:
        return [slow]
    view, sh = _VIEW[w]
    pre, la = _linear(a, base)
    idx = f"{la} + FR[{_page(la, w)}]" if not sh else f"({la} + FR[{_page(la, w)}]) >> {sh}"
    return _guarded(a, w, top, slow, pre + ["try:", f" {dst} = {view}[{idx}]", "except KeyError:", " " + slow])


def store(s: int, a: str, w: int, v: str, top: int | None, base: int = 0) -> list[str]:
    """Lines writing local/expression `v` (already masked) to s:a; `sm` is
    set when the write hit compiled code."""
    slow = f"sm = WR({s}, {a}, {w}, {v})"
    if top is None:
        return [slow]
    view, sh = _VIEW[w]
    pre, la = _linear(a, base)
    idx = f"{la} + FW[{_page(la, w)}]" if not sh else f"({la} + FW[{_page(la, w)}]) >> {sh}"
    return _guarded(a, w, top, slow, pre + ["try:", f" {view}[{idx}] = {v}", "except KeyError:", " " + slow])
