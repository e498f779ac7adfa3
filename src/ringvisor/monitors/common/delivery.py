"""Events into the guest: exceptions, interrupts and INT n delivered through
the guest's virtual IDT with the frame the guest's CPU would push (SDM vol. 3
6.12: gate checks, the stack switch through the guest's TSS, EFLAGS with the
virtual IF/IOPL, CS with the virtual RPL), the double-fault rules of table
6-5 (a fault the guest could not take even as #DF is a virtual triple
fault), and the far returns (IRET, RETF) a deprivileged kernel cannot do
itself: to its own virtual ring 0, or to user mode with the virtual IF the
frame carries, or to virtual-8086 mode; events out of virtual-8086 mode
push the v86 frame (GS, FS, DS, ES above SS:ESP) as the SDM's
INTERRUPT-FROM-VIRTUAL-8086-MODE does (v86.py).

The caller passes the real guest state (a CpuState) and the monitor (for
the virtual CPU, guest memory and the real descriptor views); on success
the state and the virtual CPU describe the guest after the event. Nothing
changes when a check fails: the VirtualFault says what the guest takes.
"""
from __future__ import annotations

from ringvisor.cpu.semantics.segments import null_segment
from ringvisor.cpu.architecture import VIF, VIP
from ringvisor.monitors.common import v86
from ringvisor.monitors.common.descriptors import decode
from ringvisor.monitors.common.guest_mmu import GP, VirtualFault
from ringvisor.monitors.common.vcpu import IF, IOPL, NT, RF, TF, VM

EXC, SOFT, EXT = "exception", "software", "external"
DF, TS, NP, SS_FAULT = 8, 10, 11, 12
HAS_ERROR_CODE = frozenset({8, 10, 11, 12, 13, 14, 17})
NOT_FAULTS = frozenset({1, 2, 3, 4, 8, 18})      # traps and aborts: RF is not set in their frame
CONTRIBUTORY = frozenset({0, 10, 11, 12, 13})
EFLAGS_WRITABLE = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x800 | TF | IF | 0x400 | IOPL | NT | RF | VM \
    | 0x40000 | 0x200000
VECTOR_NAMES = {0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM",
                8: "#DF", 10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF",
                17: "#AC", 18: "#MC"}


def vector_name(v: int) -> str:
    return VECTOR_NAMES.get(v, f"vector {v:#04x}")


class TripleFault(Exception):
    """The guest could not take an exception, not even as a double fault."""


class Unsupported(Exception):
    """Guest behaviour this monitor does not virtualize (said plainly)."""


# --- the guest's descriptor tables --------------------------------------------------
def guest_descriptor(mon, sel: int, exc: int = GP):
    v = mon.vcpu
    if sel & 4:
        if v.ldtr.unusable or not v.ldtr.selector & 0xFFFC:
            raise VirtualFault(exc, sel & 0xFFFC)          # no LDT loaded: as the processor does
        raise Unsupported(f"selector {sel:#06x} names the guest's LDT, which the trap monitor "
                          "does not shadow")
    index = sel & 0xFFF8
    if index + 7 > v.gdtr.limit:
        raise VirtualFault(exc, sel & 0xFFFC)
    return decode(mon.gmmu.read_u(v.gdtr.base + index, 8), v.gdtr.base + index)


# --- delivery ---------------------------------------------------------------------------
def raise_event(mon, st, vector: int, code: int | None, kind: str, return_eip: int) -> None:
    """Deliver one event with the double-fault rules; raises TripleFault."""
    chain = [vector_name(vector)]
    first = vector if kind == EXC else None
    fault_eip = st.eip
    while True:
        try:
            deliver(mon, st, vector, code, kind, return_eip)
            return
        except VirtualFault as f:
            mon.stats["delivery_faults"] += 1
            chain.append(f"{vector_name(f.vector)}({f.code:#x})" if f.code is not None
                         else vector_name(f.vector))
            if f.cr2 is not None:
                mon.vcpu.cr2 = f.cr2
            if kind == SOFT:                    # the fault belongs to the INT instruction
                vector, code, kind, return_eip, first = f.vector, f.code, EXC, fault_eip, f.vector
                continue
            if vector == DF:
                raise TripleFault(" -> ".join(chain)) from None
            if first is not None and _double(first, f.vector):
                vector, code, kind, first = DF, 0, EXC, DF
            else:
                vector, code, kind, first = f.vector, f.code, EXC, f.vector


def _double(first: int, second: int) -> bool:
    return (first in CONTRIBUTORY and second in CONTRIBUTORY) or \
        (first == 14 and (second in CONTRIBUTORY or second == 14))


def deliver(mon, st, vector: int, code: int | None, kind: str, return_eip: int) -> None:
    v, gmmu = mon.vcpu, mon.gmmu
    ext = 0 if kind == SOFT else 1
    if kind != EXC or vector not in HAS_ERROR_CODE:
        code = None
    if vector * 8 + 7 > v.idtr.limit:
        raise VirtualFault(GP, vector * 8 + 2 + ext)
    gate = decode(gmmu.read_u(v.idtr.base + vector * 8, 8))
    t = gate.type
    if gate.s or t not in (5, 6, 7, 14, 15):
        raise VirtualFault(GP, vector * 8 + 2 + ext)
    if kind == SOFT and gate.dpl < v.cpl:
        raise VirtualFault(GP, vector * 8 + 2)
    if not gate.present:
        raise VirtualFault(NP, vector * 8 + 2 + ext)
    if t in (5, 6, 7):
        raise Unsupported(f"vector {vector:#x} uses a {'task' if t == 5 else '16-bit'} gate, "
                          "which the trap monitor does not emulate")
    sel = gate.gate_selector
    if (sel & 0xFFFC) == 0:
        raise VirtualFault(GP, ext)
    try:
        d = guest_descriptor(mon, sel)
    except VirtualFault as f:
        if f.vector != GP:
            raise
        raise VirtualFault(GP, (sel & 0xFFFC) + ext) from None
    if not d.code or d.dpl > v.cpl:
        raise VirtualFault(GP, (sel & 0xFFFC) + ext)
    if not d.present:
        raise VirtualFault(NP, (sel & 0xFFFC) + ext)
    from_v86 = v.vm
    if from_v86 and (d.conforming or d.dpl != 0):
        raise VirtualFault(GP, (sel & 0xFFFC) + ext)   # v86: only to a ring-0 handler (SDM 20.3.1.1)
    offset = gate.gate_offset
    if offset > d.limit:
        raise VirtualFault(GP, ext)
    vflags = v.virtual_flags(st.eflags)
    # SDM vol. 3 17.3.1.1: a fault pushes RF = 1 (the restarted instruction's breakpoint is skipped).
    pushed = vflags | RF if kind == EXC and vector not in NOT_FAULTS else vflags
    frame = [pushed, st.cs.selector if from_v86 else (st.cs.selector & ~3) | v.cpl, return_eip]
    if not d.conforming and d.dpl < v.cpl:
        new_cpl = d.dpl
        ss_sel, esp = _tss_stack(mon, new_cpl, ext)
        sd = guest_descriptor(mon, ss_sel, TS)
        if (ss_sel & 3) != new_cpl or sd.dpl != new_cpl or not sd.writable:
            raise VirtualFault(TS, (ss_sel & 0xFFFC) + ext)
        if not sd.present:
            raise VirtualFault(SS_FAULT, (ss_sel & 0xFFFC) + ext)
        frame = [st.ss.selector if from_v86 else (st.ss.selector & ~3) | v.cpl, st.esp] + frame
        if from_v86:
            frame = v86.pushed_selectors(st) + frame
        stack_base, stack_esp = sd.base, esp
    else:
        new_cpl, ss_sel = v.cpl, None
        stack_base, stack_esp = st.ss.base, st.esp
    if code is not None:
        frame.append(code)
    new_esp = (stack_esp - 4 * len(frame)) & 0xFFFFFFFF
    data = b"".join(x.to_bytes(4, "little") for x in reversed(frame))
    gmmu.write((stack_base + new_esp) & 0xFFFFFFFF, data, user=new_cpl == 3)
    # Committed: the guest is now in its handler.
    v.cpl = new_cpl
    if from_v86:
        v86.leave(mon, st)
    mon.load_code(st, sel, new_cpl)
    if ss_sel is not None:
        mon.load_stack(st, ss_sel, new_cpl)
    st.esp = new_esp
    st.eip = offset
    v.nt = False
    if t & 1 == 0:
        v.if_ = False
        mon.note_if_cleared(f"interrupt gate {vector:#04x}", st)
    st.eflags = v.real_flags(vflags & ~(TF | NT | RF | VM))


def _tss_stack(mon, cpl: int, ext: int) -> tuple[int, int]:
    """SSn:ESPn from the guest's (virtual) 32-bit TSS."""
    tr = mon.vcpu.tr
    at = 4 + 8 * cpl
    if tr.type not in (9, 11) or at + 5 > tr.limit:
        raise VirtualFault(TS, (tr.selector & 0xFFFC) + ext)
    esp = mon.gmmu.read_u(tr.base + at, 4)
    ss = mon.gmmu.read_u(tr.base + at + 4, 2)
    if (ss & 0xFFFC) == 0:
        raise VirtualFault(TS, ext)
    return ss, esp


# --- far returns ------------------------------------------------------------------------
def far_return(mon, st, osz: int, iret: bool, release: int = 0) -> None:
    """IRET or RETF [imm16] executed by the guest kernel, emulated against the
    virtual CPU (SDM IRET/RET: protected mode, same or outer privilege)."""
    v, gmmu = mon.vcpu, mon.gmmu
    if iret and v.nt:
        raise Unsupported("IRET with EFLAGS.NT set (a task return): the trap monitor does not "
                          "emulate task switches")
    smask = 0xFFFFFFFF if st.ss.db else 0xFFFF
    user = v.cpl == 3

    def pop(k: int) -> int:
        return gmmu.read_u((st.ss.base + ((st.esp + k * osz) & smask)) & 0xFFFFFFFF, osz, user)

    eip, sel = pop(0), pop(1) & 0xFFFF
    n = 2
    if iret:
        popped, n = pop(2), 3
        if osz == 4 and popped & VM and v.cpl == 0:
            v86.enter(mon, st, pop, eip, sel, popped, EFLAGS_WRITABLE | VIF | VIP)
            return
    if (sel & 0xFFFC) == 0:
        raise VirtualFault(GP, 0)
    d = guest_descriptor(mon, sel)
    rpl = sel & 3
    if not d.code or rpl < v.cpl or (d.conforming and d.dpl > rpl) or \
            (not d.conforming and d.dpl != rpl):
        raise VirtualFault(GP, sel & 0xFFFC)
    if not d.present:
        raise VirtualFault(NP, sel & 0xFFFC)
    if eip > d.limit:
        raise VirtualFault(GP, 0)
    after = (st.esp + n * osz + release) & smask
    if iret:
        vflags = _popped_flags(v, st.eflags, popped, osz)
    if rpl == v.cpl:
        mon.load_code(st, sel, rpl)
        st.esp = (st.esp & ~smask) | after
    else:
        new_esp = gmmu.read_u((st.ss.base + after) & 0xFFFFFFFF, osz, user)
        ss_sel = gmmu.read_u((st.ss.base + ((after + osz) & smask)) & 0xFFFFFFFF, 2, user)
        if (ss_sel & 0xFFFC) == 0:
            raise VirtualFault(GP, 0)
        sd = guest_descriptor(mon, ss_sel)
        if (ss_sel & 3) != rpl or sd.dpl != rpl or not sd.writable:
            raise VirtualFault(GP, ss_sel & 0xFFFC)
        if not sd.present:
            raise VirtualFault(SS_FAULT, ss_sel & 0xFFFC)
        v.cpl = rpl
        mon.load_code(st, sel, rpl)
        mon.load_stack(st, ss_sel, rpl)
        st.esp = (new_esp + release) & (0xFFFFFFFF if osz == 4 else 0xFFFF)
        _nullify_outer(mon, st, rpl)
    st.eip = eip
    if iret:
        v.set_from_flags(vflags)
        st.eflags = v.real_flags(vflags)


def _popped_flags(v, real: int, new: int, osz: int) -> int:
    """The virtual EFLAGS an IRET at the virtual CPL produces (SDM POPF table)."""
    old = v.virtual_flags(real)
    writable = EFLAGS_WRITABLE & ~VM
    if v.cpl == 0 and osz == 4:
        writable |= VIF | VIP                   # IRET at CPL 0 loads them (SDM IRET)
    if v.cpl > 0:
        writable &= ~IOPL
    if v.cpl > v.iopl:
        writable &= ~IF
    if osz == 2:
        writable &= 0xFFFF
    return (old & ~writable) | (new & writable) | 2


def _nullify_outer(mon, st, cpl: int) -> None:
    """Data segment registers the new (outer) CPL may not use become null,
    judged by the guest's descriptors, not the monitor's rewritten ones."""
    for name in ("es", "ds", "fs", "gs"):
        seg = getattr(st, name)
        if seg.unusable or (seg.selector & 0xFFFC) == 0:
            continue
        try:
            d = guest_descriptor(mon, seg.selector)
        except (VirtualFault, Unsupported):
            continue
        if (not d.code or not d.conforming) and d.dpl < cpl:
            setattr(st, name, null_segment(0))
