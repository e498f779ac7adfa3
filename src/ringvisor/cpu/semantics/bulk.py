"""Repeated string instructions in bulk: many elements in one host operation
where the result cannot differ from doing them one at a time.

A *run* is the elements from the current index register onwards (upwards,
or downwards with DF=1) that lie inside one page of RAM whose translation
the TLB holds for this kind of access (so the walk has already set A and D
and no #PF is possible), inside the segment's limits and rights (no #GP or
#SS) and inside the address size (no wrap of SI/DI at 64 KiB or 4 GiB).
Each `run_*` function does at most `n` elements of such a run and returns
(elements done, whether a REPE/REPNE condition ended the instruction);
0 elements means the caller does the next one through the ordinary memory
path, which faults, walks the page tables or reaches MMIO exactly as the
interpreter does. Registers and flags are left as after the last element.
"""
from __future__ import annotations

from ringvisor.cpu import flags as FL
from ringvisor.cpu.core import ES

M32 = 0xFFFFFFFF


def span(cpu, s: int, off: int, w: int, back: bool, n: int, write: int) -> tuple[int, int]:
    """(k, p): up to n elements of width w from s:off make a run of k
    elements, the first at physical p; k = 0 when there is none."""
    if off < cpu.slo[s] or not (cpu.swrite[s] if write else cpu.sread[s]):
        return 0, 0
    lin = (cpu.sbase[s] + off) & M32
    po = lin & 0xFFF
    if po + w > 0x1000 or off + w - 1 > cpu.shi[s]:
        return 0, 0
    if back:
        # Elements off, off-w, ...: stay above the segment's lower limit and the page start.
        k = min(n, (off - cpu.slo[s]) // w + 1, po // w + 1)
    else:
        k = min(n, (cpu.shi[s] + 1 - off) // w, (0x1000 - po) // w)
    if cpu.pg:
        base = cpu.tlb[cpu.user | write << 1].get(lin >> 12)
        if base is None:
            return 0, 0
    else:
        base = lin & 0xFFFFF000
    if base + 0x1000 > cpu.ramsize:
        return 0, 0                          # MMIO or beyond RAM: element by element
    return k, base | po


def _limit(off: int, w: int, back: bool, amask: int, k: int) -> int:
    """k, cut where the index register would wrap (at 64 KiB or 4 GiB)."""
    return min(k, off // w + 1) if back else min(k, (amask + 1 - off) // w)


def _lowest(p: int, k: int, w: int, back: bool) -> int:
    return p - (k - 1) * w if back else p


def _advance(r, i: int, delta: int, amask: int) -> None:
    r[i] = (r[i] & ~amask & M32) | ((r[i] + delta) & amask)


def _code_written(cpu, p: int, size: int) -> None:
    cp = cpu.code_pages
    if cp and (p >> 12 in cp or (p + size - 1) >> 12 in cp):
        cpu.code_written(p, size)


def run_stos(cpu, src, w, step, amask, n, rep):
    r = cpu.r
    off = r[7] & amask
    back = step < 0
    k, p = span(cpu, ES, off, w, back, _limit(off, w, back, amask, n), 1)
    if not k:
        return 0, False
    p, size = _lowest(p, k, w, back), k * w
    cpu.mm[p:p + size] = (r[0] & FL.MASK[w]).to_bytes(w, "little") * k
    _code_written(cpu, p, size)
    _advance(r, 7, k * step, amask)
    return k, False


def run_movs(cpu, src, w, step, amask, n, rep):
    r = cpu.r
    si, di = r[6] & amask, r[7] & amask
    back = step < 0
    n = _limit(si, w, back, amask, _limit(di, w, back, amask, n))
    k, ps = span(cpu, src, si, w, back, n, 0)
    if k:
        k, pd = span(cpu, ES, di, w, back, k, 1)
    if not k:
        return 0, False
    # Reads still to come lie above the writes (upwards) or below them (DF=1):
    # an element reading what an earlier one of this run wrote (a pattern
    # fill) must see it, so the run stops before that element.
    ahead = ps - pd if back else pd - ps
    if 0 < ahead < k * w:
        k = ahead // w
        if not k:
            return 0, False
    ps, pd, size = _lowest(ps, k, w, back), _lowest(pd, k, w, back), k * w
    mm = cpu.mm
    mm[pd:pd + size] = mm[ps:ps + size]
    _code_written(cpu, pd, size)
    _advance(r, 6, k * step, amask)
    _advance(r, 7, k * step, amask)
    return k, False


def run_scasb(cpu, src, w, step, amask, n, rep):
    r = cpu.r
    off = r[7] & amask
    back = step < 0
    k, p = span(cpu, ES, off, 1, back, _limit(off, 1, back, amask, n), 0)
    if not k:
        return 0, False
    al = r[0] & 0xFF
    lo = _lowest(p, k, 1, back)
    data = bytes(cpu.mm[lo:lo + k])
    if back:
        data = data[::-1]                    # element order: from the top down
    if rep == 2:                             # REPNE: up to the first byte equal to AL
        i = data.find(al)
    else:                                    # REPE: up to the first byte that differs
        i = k - len(data.lstrip(bytes((al,))))
        if i == k:
            i = -1
    done = k if i < 0 else i + 1
    FL.sub(cpu, al, data[done - 1], 0, 1)
    _advance(r, 7, done * step, amask)
    return done, i >= 0


RUNS = {"STOS": run_stos, "MOVS": run_movs, "SCAS": run_scasb}
