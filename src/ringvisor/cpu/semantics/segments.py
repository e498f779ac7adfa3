"""Segment loading (SDM vol. 3 3.4-3.5, 5.5-5.8): descriptor fetch from the
GDT/LDT, descriptor decoding into the hidden cache, and the protection checks
of every data/stack segment load (MOV, POP, LDS/LES/LFS/LGS/LSS). Code
segment loads live with the far transfers (transfer.py)."""
from __future__ import annotations

from dataclasses import dataclass

from ringvisor.cpu.core import CS, DS, ES, FS, GS, GP, NP, SS, SSF, CpuFault, gp
from ringvisor.cpu.semantics.registry import sem
from ringvisor.cpu_state import Segment


@dataclass
class Desc:
    """A raw descriptor and where it lives (to set its accessed bit)."""
    lo: int
    hi: int
    addr: int

    @property
    def type(self) -> int:
        return (self.hi >> 8) & 0xF

    @property
    def s(self) -> bool:
        return bool(self.hi & 0x1000)

    @property
    def dpl(self) -> int:
        return (self.hi >> 13) & 3

    @property
    def present(self) -> bool:
        return bool(self.hi & 0x8000)

    @property
    def code(self) -> bool:
        return self.s and bool(self.hi & 0x800)

    @property
    def conforming(self) -> bool:
        return self.code and bool(self.hi & 0x400)

    @property
    def readable(self) -> bool:        # code: R bit; data: always
        return self.s and (not self.code or bool(self.hi & 0x200))

    @property
    def writable(self) -> bool:        # data with W bit
        return self.s and not self.code and bool(self.hi & 0x200)

    @property
    def base(self) -> int:
        return (self.lo >> 16) | ((self.hi & 0xFF) << 16) | (self.hi & 0xFF000000)

    @property
    def limit(self) -> int:
        lim = (self.lo & 0xFFFF) | (self.hi & 0xF0000)
        return (lim << 12) | 0xFFF if self.hi & 0x800000 else lim

    # Gate fields
    @property
    def gate_selector(self) -> int:
        return self.lo >> 16

    @property
    def gate_offset(self) -> int:
        off = self.lo & 0xFFFF
        if self.type & 8:                       # 32-bit gate
            off |= self.hi & 0xFFFF0000
        return off

    @property
    def param_count(self) -> int:
        return self.hi & 0x1F

    def segment(self, selector: int) -> Segment:
        return Segment(selector=selector, base=self.base, limit=self.limit, type=self.type,
                       present=self.present, dpl=self.dpl, db=bool(self.hi & 0x400000),
                       s=self.s, g=bool(self.hi & 0x800000), avl=bool(self.hi & 0x100000))


def null_segment(selector: int = 0) -> Segment:
    return Segment(selector=selector, base=0, limit=0, type=0, present=False, unusable=True)


def fetch(cpu, sel: int, exc=GP) -> Desc:
    """Read the descriptor `sel` names; #GP(sel) (or `exc`) outside the table."""
    index = sel & 0xFFF8
    if sel & 4:
        ldt = cpu.ldtr
        if ldt.unusable or (ldt.selector & 0xFFFC) == 0:
            raise CpuFault(exc, sel & 0xFFFC)
        base, limit = ldt.base, ldt.limit
    else:
        base, limit = cpu.gdtr.base, cpu.gdtr.limit
    if index + 7 > limit:
        raise CpuFault(exc, sel & 0xFFFC)
    addr = (base + index) & 0xFFFFFFFF
    return Desc(cpu.rd_sys(addr, 4), cpu.rd_sys(addr + 4, 4), addr)


def try_fetch(cpu, sel: int) -> Desc | None:
    if (sel & 0xFFFC) == 0:
        return None
    try:
        return fetch(cpu, sel)
    except CpuFault as f:
        if f.vector == 14:
            raise                  # a descriptor table on a not-present page faults (LAR, LSL...)
        return None


def set_accessed(cpu, d: Desc) -> None:
    if d.s and not d.hi & 0x100:
        d.hi |= 0x100
        cpu.wr_sys(d.addr + 4, 4, d.hi)


def v86_segment(selector: int) -> Segment:
    """A segment register as virtual-8086 mode loads it (SDM 20.1.1): base =
    selector * 16, limit 0xFFFF, 16-bit, a present read/write accessed data
    segment at DPL 3 (access rights 0xF3, CS included: the form VM entry
    requires of a virtual-8086 guest, SDM 26.3.1.2)."""
    selector &= 0xFFFF
    return Segment(selector=selector, base=selector << 4, limit=0xFFFF, type=3, present=True,
                   dpl=3, db=False, s=True, g=False)


def load_seg(cpu, i: int, sel: int) -> None:
    """Load data/stack segment register `i` with selector `sel` (SDM MOV/POP)."""
    sel &= 0xFFFF
    if cpu.flags & 0x20000:
        cpu.set_seg(i, v86_segment(sel))
        return
    if not cpu.pe:
        seg = cpu.segs[i]
        # Real mode: base = selector * 16; the rest of the cache is kept
        # (which is what makes "unreal mode" work).
        cpu.set_seg(i, Segment(selector=sel, base=sel << 4, limit=seg.limit, type=seg.type,
                               present=True, dpl=seg.dpl, db=seg.db, s=seg.s, g=seg.g,
                               avl=seg.avl))
        return
    if i == CS:
        raise CpuFault(6)
    rpl = sel & 3
    if (sel & 0xFFFC) == 0:
        if i == SS:
            raise gp(0)
        cpu.set_seg(i, null_segment(sel))
        return
    d = fetch(cpu, sel)
    if i == SS:
        if rpl != cpu.cpl or not d.writable or d.dpl != cpu.cpl:
            raise gp(sel & 0xFFFC)
        if not d.present:
            raise CpuFault(SSF, sel & 0xFFFC)
    else:
        if not d.s or not d.readable:
            raise gp(sel & 0xFFFC)
        if not d.conforming and (rpl > d.dpl or cpu.cpl > d.dpl):
            raise gp(sel & 0xFFFC)
        if not d.present:
            raise CpuFault(NP, sel & 0xFFFC)
    set_accessed(cpu, d)
    cpu.set_seg(i, d.segment(sel))


def nullify_outer(cpu) -> None:
    """After a return to an outer ring: data segment registers the new CPL
    may not use are loaded with null (SDM RET/IRET)."""
    for i in (ES, DS, FS, GS):
        s = cpu.segs[i]
        if s.unusable:
            continue
        data_or_nc = not (s.s and s.type & 8) or not (s.type & 4)
        if (not s.s or data_or_nc) and s.dpl < cpu.cpl:
            cpu.set_seg(i, null_segment(0))


# --- instructions -------------------------------------------------------------------
@sem("8E")
def mov_to_sreg(cpu, ins):
    if ins.reg == CS or ins.ud:
        raise CpuFault(6)
    load_seg(cpu, ins.reg, ins.g1(cpu, ins))
    if ins.reg == SS:
        cpu.shadow = True


def _load_far(seg_index):
    def fn(cpu, ins):
        w = ins.osz
        a = ins.eaf(cpu, ins)
        off = cpu.rd(ins.seg, a, w)
        sel = cpu.rd(ins.seg, (a + w) & (0xFFFF if ins.asz == 2 else 0xFFFFFFFF), 2)
        load_seg(cpu, seg_index, sel)
        ins.s0(cpu, ins, off)
        if seg_index == SS:
            cpu.shadow = True
    return fn


for _name, _i in (("LES", ES), ("LDS", DS), ("LSS", SS), ("LFS", FS), ("LGS", GS)):
    sem(_name)(_load_far(_i))
