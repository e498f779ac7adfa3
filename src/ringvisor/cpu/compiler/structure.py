"""Nesting a trace's edges into Python control flow.

Back edges become loops (`while True:`), forward edges within the same
loop become skipped sections (`if not taken:`), a forward edge to the step
just after the innermost loop becomes `break`, a back edge to the
innermost loop's head from inside it `continue`. Edges that do not nest
(crossing loops, jumps out of two loops at once) are turned into trace
exits, which are always correct: the next trace starts there.

The result is a list of nodes: a step index (int), `Loop`, or `Skip` (a
conditional branch step and the section run when it is not taken).
"""
from __future__ import annotations

from ringvisor.cpu.compiler.trace import BACK, EXIT, FWD, NEXT


class Loop:
    __slots__ = ("head", "end", "body")

    def __init__(self, head: int, end: int):
        self.head, self.end, self.body = head, end, []

    def __repr__(self) -> str:
        return f"Loop({self.head}..{self.end}, {self.body})"


class Skip:
    __slots__ = ("branch", "to", "body")

    def __init__(self, branch: int, to: int):
        self.branch, self.to, self.body = branch, to, []

    def __repr__(self) -> str:
        return f"Skip({self.branch}->{self.to}, {self.body})"


def _exit(step, which: str, k_eip: int) -> None:
    setattr(step, which, (EXIT, k_eip))


def _loops(steps) -> dict[int, Loop]:
    """Head -> Loop, back edges that do not nest turned into exits."""
    while True:
        ends: dict[int, int] = {}
        for s in steps:
            for which in ("other", "cont"):
                f = getattr(s, which)
                if f and f[0] == BACK:
                    ends[f[1]] = max(ends.get(f[1], -1), s.index)
        loops = {}
        bad = None
        for head in sorted(ends):
            end = ends[head]
            for o in loops.values():
                if o.head < head <= o.end < end:
                    bad = head
            if bad is not None:
                break
            loops[head] = Loop(head, end)
        if bad is None:
            # A back edge must leave from inside its own loop's innermost level.
            for s in steps:
                for which in ("other", "cont"):
                    f = getattr(s, which)
                    if f and f[0] == BACK and innermost(loops, s.index) is not loops[f[1]]:
                        bad = f[1]
                        _exit(s, which, steps[f[1]].eip)
            if bad is None:
                return loops
            continue
        for s in steps:
            for which in ("other", "cont"):
                f = getattr(s, which)
                if f and f[0] == BACK and f[1] == bad:
                    _exit(s, which, steps[bad].eip)


def innermost(loops: dict[int, Loop], i: int):
    best = None
    for o in loops.values():
        if o.head <= i <= o.end and (best is None or o.head > best.head):
            best = o
    return best


def structure(steps) -> list:
    loops = _loops(steps)
    skips: dict[int, Skip] = {}
    for s in steps:
        f = s.other
        if not f or f[0] != FWD:
            continue
        m = f[1]
        lp = innermost(loops, s.index)
        if lp is not None and m == lp.end + 1:
            continue                                      # break
        end = lp.end if lp is not None else len(steps) - 1
        ok = m <= end and all(o.head > s.index and o.end < m or o.head >= m or o.end <= s.index
                              or (o.head <= s.index and o.end >= m)
                              for o in loops.values())
        ok = ok and all(not (k < s.index < sk.to < m) and not (s.index < k < m < sk.to)
                        for k, sk in skips.items())
        if ok:
            skips[s.index] = Skip(s.index, m)
        else:
            s.other = (EXIT, steps[m].eip)
    return _build(steps, 0, len(steps), loops, skips, None)


def _build(steps, lo: int, hi: int, loops, skips, inside) -> list:
    out: list = []
    i = lo
    while i < hi:
        lp = loops.get(i)
        if lp is not None and lp is not inside:
            lp.body = _build(steps, i, lp.end + 1, loops, skips, lp)
            out.append(lp)
            i = lp.end + 1
            continue
        sk = skips.get(i)
        if sk is not None:
            sk.body = _build(steps, i + 1, sk.to, loops, skips, None)
            out.append(sk)
            i = sk.to
            continue
        out.append(i)
        i += 1
    return out


_ = NEXT
