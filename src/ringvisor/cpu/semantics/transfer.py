"""Far control transfers (SDM vol. 3 5.8): far JMP/CALL to code segments,
through call gates (with the stack switch and parameter copy of a call to
an inner ring) and to task gates/TSSs (task.py); far RET to the same or an
outer ring. Real mode: CS base = selector * 16."""
from __future__ import annotations

from ringvisor.cpu.core import CS, GP, NP, SS, SSF, TS, CpuFault, gp
from ringvisor.cpu.semantics.segments import fetch, nullify_outer, set_accessed, v86_segment
from ringvisor.cpu_state import Segment


def _real_cs(cpu, sel: int) -> Segment:
    if cpu.flags & 0x20000:
        return v86_segment(sel)
    s = cpu.segs[CS]
    return Segment(selector=sel, base=sel << 4, limit=s.limit, type=s.type, present=True,
                   dpl=s.dpl, db=s.db, s=True, g=s.g, avl=s.avl)


def load_cs(cpu, d, sel: int, cpl: int) -> None:
    set_accessed(cpu, d)
    cpu.set_seg(CS, d.segment((sel & 0xFFFC) | cpl))
    cpu.set_cpl(cpl)


def _check_code(cpu, d, sel: int) -> None:
    """Direct far JMP/CALL to a code segment (no privilege change)."""
    if d.conforming:
        if d.dpl > cpu.cpl:
            raise gp(sel & 0xFFFC)
    elif (sel & 3) > cpu.cpl or d.dpl != cpu.cpl:
        raise gp(sel & 0xFFFC)
    if not d.present:
        raise CpuFault(NP, sel & 0xFFFC)


def _check_eip(d, off: int) -> None:
    if off > d.limit:
        raise gp(0)


def far_jmp(cpu, sel: int, off: int, osz: int) -> None:
    _far(cpu, sel, off, osz, call=False)


def far_call(cpu, sel: int, off: int, osz: int) -> None:
    _far(cpu, sel, off, osz, call=True)


def _far(cpu, sel, off, osz, call):
    if not cpu.pe or cpu.flags & 0x20000:
        off &= 0xFFFF if osz == 2 else 0xFFFFFFFF
        if off > cpu.segs[CS].limit:
            raise gp(0)
        if call:
            cpu.push(cpu.segs[CS].selector, osz)
            cpu.push(cpu.eip, osz)
        cpu.set_seg(CS, _real_cs(cpu, sel))
        cpu.eip = off
        return
    if (sel & 0xFFFC) == 0:
        raise gp(0)
    d = fetch(cpu, sel)
    if d.code:
        _check_code(cpu, d, sel)
        off &= 0xFFFF if osz == 2 else 0xFFFFFFFF
        _check_eip(d, off)
        if call:
            _push_return(cpu, osz)
        load_cs(cpu, d, sel, cpu.cpl)
        cpu.eip = off
        return
    if d.s:
        raise gp(sel & 0xFFFC)
    t = d.type
    if t in (4, 12):
        return _call_gate(cpu, d, sel, call)
    if t in (5, 1, 9):
        from ringvisor.cpu.semantics import task
        if d.dpl < cpu.cpl or d.dpl < (sel & 3):
            raise gp(sel & 0xFFFC)
        if not d.present:
            raise CpuFault(NP, sel & 0xFFFC)
        task.switch_via(cpu, d, sel, "call" if call else "jmp")
        return
    raise gp(sel & 0xFFFC)


def _push_return(cpu, osz):
    """Push CS:EIP, checking both slots first so nothing is half-done."""
    r = cpu.r
    sp = r[4] if cpu.stack32 else r[4] & 0xFFFF
    cpu.check_wr(SS, (sp - 2 * osz) & (0xFFFFFFFF if cpu.stack32 else 0xFFFF), 2 * osz)
    cpu.push(cpu.segs[CS].selector, osz)
    cpu.push(cpu.eip, osz)


def _call_gate(cpu, g, sel, call):
    if g.dpl < cpu.cpl or g.dpl < (sel & 3):
        raise gp(sel & 0xFFFC)
    if not g.present:
        raise CpuFault(NP, sel & 0xFFFC)
    tsel = g.gate_selector
    if (tsel & 0xFFFC) == 0:
        raise gp(0)
    d = fetch(cpu, tsel)
    if not d.code or d.dpl > cpu.cpl:
        raise gp(tsel & 0xFFFC)
    if not call and not d.conforming and d.dpl != cpu.cpl:
        raise gp(tsel & 0xFFFC)
    if not d.present:
        raise CpuFault(NP, tsel & 0xFFFC)
    gsz = 4 if g.type & 8 else 2
    off = g.gate_offset
    _check_eip(d, off)
    if call and not d.conforming and d.dpl < cpu.cpl:
        _inner_call(cpu, g, d, tsel, off, gsz)
        return
    if call:
        _push_return(cpu, gsz)
    load_cs(cpu, d, tsel, cpu.cpl)
    cpu.eip = off


def stack_from_tss(cpu, dpl: int):
    """SS:ESP for ring `dpl` from the current TSS (32- or 16-bit)."""
    tr = cpu.tr
    if tr.type & 8:                                   # 32-bit TSS
        at = 4 + 8 * dpl
        if at + 7 > tr.limit:
            raise CpuFault(TS, tr.selector & 0xFFFC)
        esp = cpu.rd_sys(tr.base + at, 4)
        ss = cpu.rd_sys(tr.base + at + 4, 2)
    else:
        at = 2 + 4 * dpl
        if at + 3 > tr.limit:
            raise CpuFault(TS, tr.selector & 0xFFFC)
        esp = cpu.rd_sys(tr.base + at, 2)
        ss = cpu.rd_sys(tr.base + at + 2, 2)
    return ss, esp


def load_inner_stack(cpu, dpl: int, ext: int = 0):
    """Check and return (selector, Segment, esp) of the inner-ring stack."""
    ss, esp = stack_from_tss(cpu, dpl)
    if (ss & 0xFFFC) == 0:
        raise CpuFault(TS, ext)
    try:
        sd = fetch(cpu, ss, TS)
    except CpuFault as e:
        if e.vector == 14:
            raise                  # the GDT page is not present: that #PF
        raise CpuFault(TS, (ss & 0xFFFC) | ext) from e
    if (ss & 3) != dpl or sd.dpl != dpl or not sd.writable:
        raise CpuFault(TS, (ss & 0xFFFC) | ext)
    if not sd.present:
        raise CpuFault(SSF, (ss & 0xFFFC) | ext)
    set_accessed(cpu, sd)
    return ss, sd.segment(ss), esp


def switch_stack(cpu, seg: Segment, esp: int):
    cpu.set_seg(SS, seg)
    cpu.r[4] = esp if seg.db else (cpu.r[4] & 0xFFFF0000) | (esp & 0xFFFF)


def _inner_call(cpu, g, d, tsel, off, gsz):
    new_cpl = d.dpl
    saved = save_state(cpu)
    old_ss, old_esp = cpu.segs[SS].selector, cpu.r[4]
    old_cs, old_eip = cpu.segs[CS].selector, cpu.eip
    # Parameters come from the old stack (read before anything changes).
    n = g.param_count
    sp = old_esp if cpu.stack32 else old_esp & 0xFFFF
    params = [cpu.rd(SS, (sp + i * gsz) & (0xFFFFFFFF if cpu.stack32 else 0xFFFF), gsz)
              for i in range(n)]
    try:
        _, seg, esp = load_inner_stack(cpu, new_cpl)
        cpu.set_cpl(new_cpl)
        switch_stack(cpu, seg, esp)
        cpu.push(old_ss, gsz)
        cpu.push(old_esp & (0xFFFF if gsz == 2 else 0xFFFFFFFF), gsz)
        for p in reversed(params):
            cpu.push(p, gsz)
        cpu.push(old_cs, gsz)
        cpu.push(old_eip, gsz)
    except CpuFault:
        restore_state(cpu, saved)
        raise
    load_cs(cpu, d, tsel, new_cpl)
    cpu.eip = off


def save_state(cpu):
    return (list(cpu.segs), cpu.r[4], cpu.cpl, cpu.eip, cpu.flags)


def restore_state(cpu, saved):
    segs, esp, cpl, eip, flags = saved
    cpu.flags = flags
    for i, s in enumerate(segs):
        cpu.set_seg(i, s)
    cpu.r[4] = esp
    cpu.set_cpl(cpl)
    cpu.eip = eip


def check_return_cs(cpu, sel: int):
    """CS checks shared by far RET and IRET; returns the descriptor."""
    if (sel & 0xFFFC) == 0:
        raise gp(0)
    d = fetch(cpu, sel)
    rpl = sel & 3
    if not d.code or rpl < cpu.cpl:
        raise gp(sel & 0xFFFC)
    if d.conforming and d.dpl > rpl or not d.conforming and d.dpl != rpl:
        raise gp(sel & 0xFFFC)
    if not d.present:
        raise CpuFault(NP, sel & 0xFFFC)
    return d


def check_return_ss(cpu, ss: int, rpl: int):
    if (ss & 0xFFFC) == 0:
        raise gp(0)
    sd = fetch(cpu, ss)
    if (ss & 3) != rpl or not sd.writable or sd.dpl != rpl:
        raise gp(ss & 0xFFFC)
    if not sd.present:
        raise CpuFault(SSF, ss & 0xFFFC)
    return sd


def far_ret(cpu, osz: int, imm: int) -> None:
    smask = 0xFFFFFFFF if cpu.stack32 else 0xFFFF
    sp = cpu.r[4] & smask
    eip = cpu.rd(SS, sp, osz)
    sel = cpu.rd(SS, (sp + osz) & smask, 2)
    if not cpu.pe or cpu.flags & 0x20000:
        eip &= 0xFFFF if osz == 2 else 0xFFFFFFFF
        if eip > cpu.segs[CS].limit:
            raise gp(0)
        cpu.set_seg(CS, _real_cs(cpu, sel))
        cpu.eip = eip
        cpu.sp_add(2 * osz + imm)
        return
    d = check_return_cs(cpu, sel)
    rpl = sel & 3
    if rpl == cpu.cpl:
        _check_eip(d, eip)
        load_cs(cpu, d, sel, rpl)
        cpu.eip = eip
        cpu.sp_add(2 * osz + imm)
        return
    sp2 = (sp + 2 * osz + imm) & smask
    new_esp = cpu.rd(SS, sp2, osz)
    new_ss = cpu.rd(SS, (sp2 + osz) & smask, 2)
    sd = check_return_ss(cpu, new_ss, rpl)
    _check_eip(d, eip)
    load_cs(cpu, d, sel, rpl)
    set_accessed(cpu, sd)
    seg = sd.segment(new_ss)
    switch_stack(cpu, seg, new_esp if osz == 4 else new_esp & 0xFFFF)
    cpu.sp_add(imm)
    cpu.eip = eip
    nullify_outer(cpu)


_ = GP
