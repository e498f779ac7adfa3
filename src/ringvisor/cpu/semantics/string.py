"""String instructions (SDM vol. 1 7.3.9): MOVS CMPS SCAS LODS STOS INS
OUTS with REP/REPE/REPNE. A repeated instruction runs at most CHUNK
iterations per execution and then restarts itself (EIP unchanged), which is
exactly how hardware lets interrupts in between iterations; a fault in the
middle leaves the count and index registers of the completed iterations.

REP MOVS, REP STOS and REP SCASB go in bulk (bulk.py) over each run of
elements that nothing can interrupt: inside one page of RAM whose
translation the TLB holds, inside the segment limits and the address size.
Anything else (the first element on a page not in the TLB yet, an element
crossing a page, the limit, MMIO) takes one element through the ordinary
memory path, which faults exactly where the SDM says; the next run goes on
in bulk."""
from __future__ import annotations

from ringvisor.cpu import flags as FL
from ringvisor.cpu.core import DF, DS, ES, ZF
from ringvisor.cpu.semantics import bulk
from ringvisor.cpu.semantics.registry import register

CHUNK = 4096


def _make(kind: str, byte: bool):
    bulk_run = bulk.RUNS.get(kind if kind != "SCAS" or byte else "")

    def fn(cpu, ins):
        w = 1 if byte else ins.osz
        a16 = ins.asz == 2
        amask = 0xFFFF if a16 else 0xFFFFFFFF
        src = ins.seg if ins.seg >= 0 else DS
        step = -w if cpu.flags & DF else w
        rep = ins.rep
        r = cpu.r
        if rep:
            cnt = r[1] & amask
            if cnt == 0:
                return
        n = 0
        while True:
            if rep and bulk_run is not None and not cpu.watch_memory:
                # k elements done in bulk (0: none could be, do one below);
                # `stop`: a REPE/REPNE condition ended the instruction.
                k, stop = bulk_run(cpu, src, w, step, amask, min(cnt, CHUNK - n), rep)
                if k:
                    cnt = (cnt - k) & amask
                    r[1] = (r[1] & 0xFFFF0000) | cnt if a16 else cnt
                    if cnt == 0 or stop:
                        return
                    n += k
                    if n >= CHUNK:
                        cpu.eip = cpu.cur_eip      # continue on the next execution
                        return
                    continue
            if kind == "MOVS":
                v = cpu.rd(src, r[6] & amask, w)
                cpu.wr(ES, r[7] & amask, w, v)
                _adv(r, 6, step, a16)
                _adv(r, 7, step, a16)
            elif kind == "STOS":
                cpu.wr(ES, r[7] & amask, w, r[0] & FL.MASK[w])
                _adv(r, 7, step, a16)
            elif kind == "LODS":
                v = cpu.rd(src, r[6] & amask, w)
                if w == 4:
                    r[0] = v
                elif w == 2:
                    r[0] = (r[0] & 0xFFFF0000) | v
                else:
                    r[0] = (r[0] & 0xFFFFFF00) | v
                _adv(r, 6, step, a16)
            elif kind == "CMPS":
                a = cpu.rd(src, r[6] & amask, w)
                b = cpu.rd(ES, r[7] & amask, w)
                FL.sub(cpu, a, b, 0, w)
                _adv(r, 6, step, a16)
                _adv(r, 7, step, a16)
            elif kind == "SCAS":
                b = cpu.rd(ES, r[7] & amask, w)
                FL.sub(cpu, r[0] & FL.MASK[w], b, 0, w)
                _adv(r, 7, step, a16)
            elif kind == "INS":
                di = r[7] & amask
                cpu.check_wr(ES, di, w)
                cpu.wr(ES, di, w, cpu.ports.read(r[2] & 0xFFFF, w))
                _adv(r, 7, step, a16)
            else:  # OUTS
                v = cpu.rd(src, r[6] & amask, w)
                cpu.ports.write(r[2] & 0xFFFF, w, v)
                _adv(r, 6, step, a16)
            if not rep:
                return
            cnt = (cnt - 1) & amask
            r[1] = (r[1] & 0xFFFF0000) | cnt if a16 else cnt
            if cnt == 0:
                return
            if kind in ("CMPS", "SCAS"):
                z = cpu.flags & ZF
                if (rep == 3 and not z) or (rep == 2 and z):
                    return
            n += 1
            if n >= CHUNK:
                cpu.eip = cpu.cur_eip          # continue on the next execution
                return
    fn.__name__ = kind.lower() + ("b" if byte else "")
    return fn


def _adv(r, i, step, a16):
    if a16:
        r[i] = (r[i] & 0xFFFF0000) | ((r[i] + step) & 0xFFFF)
    else:
        r[i] = (r[i] + step) & 0xFFFFFFFF


for _k in ("MOVS", "STOS", "LODS", "CMPS", "SCAS", "INS", "OUTS"):
    register(_k, _make(_k, False))
    register(_k + "B", _make(_k, True))
