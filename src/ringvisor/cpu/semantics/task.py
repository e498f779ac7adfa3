"""Task switching (SDM vol. 3 ch. 7) with 32-bit TSSs: far JMP/CALL to a
TSS or task gate, INT/exceptions through a task gate, and IRET with NT=1
back to the linked task. Busy bits, the back link, EFLAGS.NT and CR0.TS
behave as the SDM's task-switch steps; a TSS whose EFLAGS has VM=1 starts
a virtual-8086 task (8086-style segments, CPL 3: v86.py); 16-bit TSSs are
not supported (#TS when met)."""
from __future__ import annotations

from ringvisor.cpu.core import CR0_TS, CS, DS, ES, FS, GS, NP, NT, SS, TS, VM, CpuFault, gp
from ringvisor.cpu.semantics.segments import fetch, null_segment, set_accessed, v86_segment

AVAILABLE, BUSY = 9, 11
GPR_OFF = 0x28          # EAX ECX EDX EBX ESP EBP ESI EDI
SEG_OFF = 0x48          # ES CS SS DS FS GS (encoding order)


def switch_via(cpu, d, sel: int, reason: str) -> None:
    """JMP/CALL whose target descriptor is a TSS or a task gate."""
    if d.type == 5:                              # task gate: the TSS it names
        tsel = d.gate_selector
        if tsel & 4:
            raise gp(tsel & 0xFFFC)
        td = fetch(cpu, tsel)
        sel, d = tsel, td
    if d.s or d.type != AVAILABLE:
        raise gp(sel & 0xFFFC)
    if not d.present:
        raise CpuFault(NP, sel & 0xFFFC)
    switch(cpu, sel, d, reason)


def _tss_for_switch(cpu, sel: int, want_type: int):
    """The TSS descriptor a task gate or a back link names: in the GDT, of
    the expected busy state, present; #TS (#NP when absent) otherwise."""
    if sel & 4:
        raise CpuFault(TS, sel & 0xFFFC)
    d = fetch(cpu, sel, TS)
    if d.s or d.type != want_type:
        raise CpuFault(TS, sel & 0xFFFC)
    if not d.present:
        raise CpuFault(NP, sel & 0xFFFC)
    return d


def switch_via_gate(cpu, g, code) -> None:
    """An interrupt or exception through a task gate in the IDT."""
    tsel = g.gate_selector
    switch(cpu, tsel, _tss_for_switch(cpu, tsel, AVAILABLE), "int")
    if code is not None:
        cpu.push(code, 4)


def iret_return(cpu) -> None:
    link = cpu.rd_sys(cpu.tr.base, 2)
    switch(cpu, link, _tss_for_switch(cpu, link, BUSY), "iret")


def _set_busy(cpu, d, busy: bool) -> None:
    d.hi = (d.hi | 0x200) if busy else (d.hi & ~0x200)
    cpu.wr_sys(d.addr + 4, 4, d.hi)


TASK_SWITCH_SOURCE = {"call": 0, "iret": 1, "jmp": 2, "int": 3}   # SDM table 27-2


def switch(cpu, sel: int, d, reason: str) -> None:
    if cpu.vmx is not None:
        # Task switches exit unconditionally in VMX non-root operation (25.1.2).
        from ringvisor.cpu.vmx.exits import R, VmExitSignal
        raise VmExitSignal(R["TASK_SWITCH"], (sel & 0xFFFF) | TASK_SWITCH_SOURCE[reason] << 30)
    if d.limit < 0x67:
        raise CpuFault(TS, sel & 0xFFFC)
    old = cpu.tr
    if old.type not in (AVAILABLE, BUSY) or old.limit < 0x67:
        raise CpuFault(TS, old.selector & 0xFFFC)
    base = d.base
    # Read the whole new TSS first: a fault here leaves the old task intact.
    new = [cpu.rd_sys(base + off, 4) for off in range(0, 0x68, 4)]
    # 1. save the outgoing task
    flags = cpu.flags & ~NT if reason in ("jmp", "iret") else cpu.flags
    ob = old.base
    cpu.wr_sys(ob + 0x20, 4, cpu.eip)
    cpu.wr_sys(ob + 0x24, 4, flags)
    for i in range(8):
        cpu.wr_sys(ob + GPR_OFF + 4 * i, 4, cpu.r[i])
    for i in range(6):
        cpu.wr_sys(ob + SEG_OFF + 4 * i, 2, cpu.segs[i].selector)
    old_desc = fetch(cpu, old.selector) if old.selector & 0xFFFC else None
    if old_desc is not None and reason in ("jmp", "iret"):
        _set_busy(cpu, old_desc, False)
    # 2. link, busy, TR, TS
    if reason in ("call", "int"):
        cpu.wr_sys(base, 2, old.selector)
    if reason != "iret":
        _set_busy(cpu, d, True)
    seg = d.segment(sel)
    seg.type = BUSY
    cpu.tr = seg
    cpu.cr0 |= CR0_TS
    # 3. load the incoming task's state
    if cpu.pg:
        cpu.cr3 = new[0x1C // 4] & 0xFFFFF018
        cpu.flush_tlb(keep_global=True)
    cpu.eip = new[0x20 // 4]
    nflags = (new[0x24 // 4] | 2) & 0x3F7FD7
    if reason in ("call", "int"):
        nflags |= NT
    cpu.flags = nflags
    cpu.r = [new[(GPR_OFF >> 2) + i] for i in range(8)]
    sels = [new[(SEG_OFF >> 2) + i] & 0xFFFF for i in range(6)]
    ldt = new[0x60 // 4] & 0xFFFF
    if nflags & VM:
        # A virtual-8086 task (SDM 7.3 step 12): its segment registers are
        # loaded the real-mode way at CPL 3; the LDT still is the TSS's.
        # (EFLAGS, with VM, is already in place: the caches are 16-bit.)
        for i in range(6):
            cpu.set_seg(i, v86_segment(sels[i]))
        cpu.set_cpl(3)
        _load_ldt(cpu, ldt)
        return
    # Selectors first (so a fault below is reported in the new task's context).
    for i in range(6):
        cpu.segs[i].selector = sels[i]
    cpu.set_cpl(sels[CS] & 3)
    _load_ldt(cpu, ldt)
    _load_task_segments(cpu, sels)


def _load_ldt(cpu, ldt: int) -> None:
    if (ldt & 0xFFFC) == 0:
        cpu.ldtr = null_segment(ldt)
        return
    if ldt & 4:
        raise CpuFault(TS, ldt & 0xFFFC)
    d = fetch(cpu, ldt, TS)
    if d.s or d.type != 2:
        raise CpuFault(TS, ldt & 0xFFFC)
    if not d.present:
        raise CpuFault(TS, ldt & 0xFFFC)
    cpu.ldtr = d.segment(ldt)


def _load_task_segments(cpu, sels) -> None:
    cpl = sels[CS] & 3
    cs = sels[CS]
    if (cs & 0xFFFC) == 0:
        raise CpuFault(TS, 0)
    d = fetch(cpu, cs, TS)
    if not d.code or (d.conforming and d.dpl > cpl) or (not d.conforming and d.dpl != cpl):
        raise CpuFault(TS, cs & 0xFFFC)
    if not d.present:
        raise CpuFault(NP, cs & 0xFFFC)
    set_accessed(cpu, d)
    cpu.set_seg(CS, d.segment(cs))
    ss = sels[SS]
    if (ss & 0xFFFC) == 0:
        raise CpuFault(TS, 0)
    sd = fetch(cpu, ss, TS)
    if not sd.writable or sd.dpl != cpl or (ss & 3) != cpl:
        raise CpuFault(TS, ss & 0xFFFC)
    if not sd.present:
        raise CpuFault(12, ss & 0xFFFC)
    set_accessed(cpu, sd)
    cpu.set_seg(SS, sd.segment(ss))
    for i in (ES, DS, FS, GS):
        s = sels[i]
        if (s & 0xFFFC) == 0:
            cpu.set_seg(i, null_segment(s))
            continue
        dd = fetch(cpu, s, TS)
        if not dd.readable or (not dd.conforming and ((s & 3) > dd.dpl or cpl > dd.dpl)):
            raise CpuFault(TS, s & 0xFFFC)
        if not dd.present:
            raise CpuFault(NP, s & 0xFFFC)
        set_accessed(cpu, dd)
        cpu.set_seg(i, dd.segment(s))
