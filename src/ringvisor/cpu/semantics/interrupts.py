"""Exceptions and interrupts (SDM vol. 3 ch. 6): delivery through the IVT
(real mode) or the IDT (interrupt, trap and task gates, with the stack
switch to an inner ring through the TSS), the double-fault rules and the
triple fault, INT n / INT3 / INTO / INT1 and IRET."""
from __future__ import annotations

from ringvisor.cpu.core import (AC, CR4_VME, CS, DF_, IF, NT, NP, PFV, RF, SS, TF, VM, CpuFault,
                                EFLAGS_WRITABLE, gp)
from ringvisor.cpu.semantics import transfer, v86, vme
from ringvisor.cpu.semantics.registry import sem
from ringvisor.cpu.semantics.segments import fetch, nullify_outer
from ringvisor.cpu.vmx.exits import VmExitSignal

EXC, SOFT, EXT = 0, 1, 2          # delivery kinds: CPU exception, INT n/INT3/INTO, external
CONTRIBUTORY = {0, 10, 11, 12, 13}
HAS_ERROR_CODE = {8, 10, 11, 12, 13, 14, 17}
# Exceptions that are not faults: #DB (a trap here: single-step, INT1), NMI,
# the INT3/INTO traps, and the aborts #DF and #MC.
NOT_FAULTS = {1, 2, 3, 4, 8, 18}


class TripleFault(Exception):
    pass


def deliver(cpu, vector: int, code: int | None, kind: int) -> None:
    """Deliver one event; raises CpuFault if delivery itself faults."""
    cpu.halted = False
    if not cpu.pe:
        _deliver_real(cpu, vector)
        return
    ext = 1 if kind == EXT or kind == EXC else 0
    idt = cpu.idtr
    if vector * 8 + 7 > idt.limit:
        raise gp(vector * 8 + 2 + ext)
    lo = cpu.rd_sys(idt.base + vector * 8, 4)
    hi = cpu.rd_sys(idt.base + vector * 8 + 4, 4)
    from ringvisor.cpu.semantics.segments import Desc
    g = Desc(lo, hi, idt.base + vector * 8)
    t = g.type
    if g.s or t not in (5, 6, 7, 14, 15):
        raise gp(vector * 8 + 2 + ext)
    if kind == SOFT and g.dpl < cpu.cpl:
        raise gp(vector * 8 + 2)
    if not g.present:
        raise CpuFault(NP, vector * 8 + 2 + ext)
    if t == 5:
        from ringvisor.cpu.semantics import task
        task.switch_via_gate(cpu, g, code)
        return
    gsz = 4 if t & 8 else 2
    sel = g.gate_selector
    if (sel & 0xFFFC) == 0:
        raise gp(ext)
    try:
        d = fetch(cpu, sel)
    except CpuFault as f:
        if f.vector == PFV:
            raise                  # the table's page is not present: that #PF, not a #GP
        raise gp((sel & 0xFFFC) | ext) from None
    if not d.code or d.dpl > cpu.cpl:
        raise gp((sel & 0xFFFC) | ext)
    if not d.present:
        raise CpuFault(NP, (sel & 0xFFFC) | ext)
    if cpu.flags & VM:
        # From virtual-8086 mode only to a non-conforming ring-0 handler
        # (SDM 20.3.1.1: else #GP with the code segment's selector).
        if d.conforming or d.dpl != 0:
            raise gp((sel & 0xFFFC) | ext)
        v86.deliver_from_v86(cpu, g, d, sel, code, ext, kind == EXC and vector not in NOT_FAULTS)
        return
    off = g.gate_offset
    if off > d.limit:
        raise gp(ext)
    flags = cpu.flags
    old_cs, old_eip = cpu.segs[CS].selector, cpu.eip
    saved = transfer.save_state(cpu)
    try:
        if not d.conforming and d.dpl < cpu.cpl:
            old_ss, old_esp = cpu.segs[SS].selector, cpu.r[4]
            _, seg, esp = transfer.load_inner_stack(cpu, d.dpl, ext)
            cpu.set_cpl(d.dpl)
            transfer.switch_stack(cpu, seg, esp)
            cpu.push(old_ss, gsz)
            cpu.push(old_esp & (0xFFFF if gsz == 2 else 0xFFFFFFFF), gsz)
            new_cpl = d.dpl
        else:
            new_cpl = cpu.cpl
        if kind == EXC and vector not in NOT_FAULTS:
            # SDM vol. 3 17.3.1.1: "For any fault-class exception except a
            # debug exception generated in response to an instruction
            # breakpoint, the value pushed for RF is 1" (so that IRET back
            # to the restarted instruction skips its code breakpoint).
            flags |= RF
        cpu.push(flags & (0xFFFF if gsz == 2 else 0xFFFFFFFF), gsz)
        cpu.push(old_cs, gsz)
        cpu.push(old_eip & (0xFFFF if gsz == 2 else 0xFFFFFFFF), gsz)
        if code is not None:
            cpu.push(code, gsz)
    except (CpuFault, VmExitSignal):      # a VM exit (EPT) mid-delivery undoes it too
        transfer.restore_state(cpu, saved)
        raise
    transfer.load_cs(cpu, d, sel, new_cpl)
    cpu.eip = off
    cpu.flags &= ~(TF | NT | RF | VM)
    if t & 1 == 0:                 # interrupt gate
        cpu.flags &= ~IF


def _deliver_real(cpu, vector: int) -> None:
    idt = cpu.idtr
    if vector * 4 + 3 > idt.limit:
        raise gp(0)
    ip = cpu.rd_lin((idt.base + vector * 4) & 0xFFFFFFFF, 2)
    cs = cpu.rd_lin((idt.base + vector * 4 + 2) & 0xFFFFFFFF, 2)
    cpu.push(cpu.flags & 0xFFFF, 2)
    cpu.push(cpu.segs[CS].selector, 2)
    cpu.push(cpu.eip & 0xFFFF, 2)
    cpu.flags &= ~(IF | TF | AC | RF)
    cpu.set_seg(CS, transfer._real_cs(cpu, cs))
    cpu.eip = ip


def exception(cpu, vector: int, code: int | None, kind: int = EXC) -> None:
    """Deliver an event with the double-fault rules (SDM table 6-5); a fault
    while delivering #DF is a triple fault (raises TripleFault)."""
    if not cpu.pe or vector not in HAS_ERROR_CODE or kind != EXC:
        code = None
    try:
        deliver(cpu, vector, code, kind)
        return
    except CpuFault as second:
        if kind == SOFT:
            # A fault while delivering INT n/INT3/INTO is a fault of that
            # instruction (EIP rolled back by the engine).
            raise CpuFault(second.vector, second.code) from None
        vmx = cpu.vmx
        if vmx is not None and vmx.exception_exits(second.vector, second.code):
            # VMX non-root: the fault met while delivering the event exits,
            # with the event in the IDT-vectoring information (27.2.4).
            raise vmx.nested_exit(cpu, second, vector, code, kind == EXT) from None
        if kind == EXT:
            first_class = None
        else:
            first_class = vector
        if vector == DF_:
            raise TripleFault() from None
        v2 = second.vector
        if _is_double(first_class, v2):
            if vmx is not None and vmx.exception_exits(DF_, 0):
                raise vmx.nested_exit(cpu, CpuFault(DF_, 0), vector, code, kind == EXT) from None
            _now_delivering(vmx, cpu, DF_, 0)
            try:
                deliver(cpu, DF_, 0 if cpu.pe else None, EXC)
                return
            except CpuFault:
                raise TripleFault() from None
        # Handled serially: the second exception is delivered instead.
        _now_delivering(vmx, cpu, v2, second.code)
        exception(cpu, v2, second.code, EXC)


def _now_delivering(vmx, cpu, vector: int, code) -> None:
    """VMX non-root: the event being delivered is now this hardware
    exception, so an exit during its delivery (a task switch through a #DF
    task gate, an EPT violation) reports it as the IDT-vectoring information
    (SDM 27.2.4), not the event that led to it."""
    if vmx is None:
        return
    has_code = vector in HAS_ERROR_CODE and cpu.pe and code is not None
    vmx.vectoring = (1 << 31 | has_code << 11 | 3 << 8 | vector, (code or 0) if has_code else 0)


def _is_double(first, second) -> bool:
    if first is None:
        return False
    if first in CONTRIBUTORY and second in CONTRIBUTORY:
        return True
    if first == 14 and (second in CONTRIBUTORY or second == 14):
        return True
    return False


# --- instructions ---------------------------------------------------------------
@sem("INT")
def int_n(cpu, ins):
    vector = ins.imm & 0xFF
    if cpu.flags & VM:             # SDM Table 20-2: by CR4.VME, IOPL and the redirection bitmap
        action = vme.ACTIONS[vme.method(cpu.cr4, cpu.iopl, lambda: v86.redirection_bit(cpu, vector))]
        if action == vme.GP_FAULT:
            raise gp(0)
        if action == vme.REDIRECT:
            v86.redirect(cpu, vector)
            return
    exception(cpu, vector, None, SOFT)


@sem("INT3")
def int3(cpu, ins):
    raise CpuFault(3, None, soft=True)


@sem("INTO")
def into(cpu, ins):
    if cpu.flags & 0x800:
        raise CpuFault(4, None, soft=True)


@sem("INT1")
def int1(cpu, ins):
    # ICEBP: a #DB trap (EIP after it) delivered like a hardware exception,
    # without the gate DPL check of INT n.
    exception(cpu, 1, None, EXC)


def popped_flags(cpu, new: int, osz: int, iret: bool) -> int:
    """The EFLAGS value POPF/IRET produce from `new` (SDM POPF table)."""
    old = cpu.flags
    writable = EFLAGS_WRITABLE & ~VM
    if not iret:
        writable &= ~RF
    if cpu.pe:
        if iret and cpu.cpl == 0 and osz == 4:
            writable |= vme.VIF | vme.VIP      # (POPF never changes them)
        if cpu.cpl > 0:
            writable &= ~0x3000
        if cpu.cpl > ((old >> 12) & 3):
            writable &= ~IF
    if osz == 2:
        writable &= 0xFFFF
    return (old & ~writable) | (new & writable) | 2


@sem("IRET")
def iret(cpu, ins):
    cpu.nmi_blocked = False        # NMI blocking ends with IRET (SDM 6.7.1)
    if cpu.vmx is not None:
        cpu.vmx.iret()             # virtual-NMI blocking ends with IRET (VMX non-root)
    osz = ins.osz
    smask = 0xFFFFFFFF if cpu.stack32 else 0xFFFF
    sp = cpu.r[4] & smask
    if cpu.flags & VM:
        _iret_in_v86(cpu, osz)
        return
    if cpu.pe and cpu.flags & NT:
        from ringvisor.cpu.semantics import task
        task.iret_return(cpu)
        return
    eip = cpu.rd(SS, sp, osz)
    sel = cpu.rd(SS, (sp + osz) & smask, 2)
    fl = cpu.rd(SS, (sp + 2 * osz) & smask, osz)
    if not cpu.pe:
        _real_style_return(cpu, eip & (0xFFFF if osz == 2 else 0xFFFFFFFF), sel, fl, osz)
        return
    if osz == 4 and fl & VM and cpu.cpl == 0:
        v86.iret_to_v86(cpu, sp, smask, eip, sel, fl)
        return
    d = transfer.check_return_cs(cpu, sel)
    rpl = sel & 3
    if rpl == cpu.cpl:
        transfer._check_eip(d, eip)
        newf = popped_flags(cpu, fl, osz, True)
        transfer.load_cs(cpu, d, sel, rpl)
        cpu.eip = eip
        cpu.sp_add(3 * osz)
        cpu.flags = newf
        return
    sp2 = (sp + 3 * osz) & smask
    new_esp = cpu.rd(SS, sp2, osz)
    new_ss = cpu.rd(SS, (sp2 + osz) & smask, 2)
    sd = transfer.check_return_ss(cpu, new_ss, rpl)
    transfer._check_eip(d, eip)
    newf = popped_flags(cpu, fl, osz, True)        # with the old CPL's rights
    transfer.load_cs(cpu, d, sel, rpl)
    from ringvisor.cpu.semantics.segments import set_accessed
    set_accessed(cpu, sd)
    transfer.switch_stack(cpu, sd.segment(new_ss), new_esp if osz == 4 else new_esp & 0xFFFF)
    cpu.eip = eip
    cpu.flags = newf
    nullify_outer(cpu)


def _iret_in_v86(cpu, osz: int) -> None:
    """IRET executed in virtual-8086 mode (SDM IRET, RETURN-FROM-VIRTUAL-
    8086-MODE): at IOPL 3 a real-mode style return that cannot change IOPL
    or VM (popped_flags at CPL 3); below IOPL 3 #GP(0), for the
    virtual-8086 monitor to emulate, unless CR4.VME makes the 16-bit form
    load VIF instead of IF (vme.py)."""
    if cpu.iopl < 3 and not (cpu.cr4 & CR4_VME and osz == 2):
        raise gp(0)
    eip = cpu.rd(SS, cpu.r[4] & 0xFFFF, osz)
    sel = cpu.rd(SS, (cpu.r[4] + osz) & 0xFFFF, 2)
    fl = cpu.rd(SS, (cpu.r[4] + 2 * osz) & 0xFFFF, osz)
    if cpu.iopl < 3:               # VME: IF and IOPL kept, VIF from the popped IF
        new = vme.popped_virtual(cpu.flags, fl, osz)
        if new is None or eip > cpu.segs[CS].limit:
            raise gp(0)
        cpu.set_seg(CS, transfer._real_cs(cpu, sel))
        cpu.eip = eip
        cpu.sp_add(3 * osz)
        cpu.flags = new
        return
    _real_style_return(cpu, eip, sel, fl, osz)


def _real_style_return(cpu, eip: int, sel: int, fl: int, osz: int) -> None:
    """The end of a real-mode (or virtual-8086 at IOPL 3) IRET: CS as a
    paragraph, the frame popped, the flags through popped_flags."""
    if eip > cpu.segs[CS].limit:
        raise gp(0)
    cpu.set_seg(CS, transfer._real_cs(cpu, sel))
    cpu.eip = eip
    cpu.sp_add(3 * osz)
    cpu.flags = popped_flags(cpu, fl, osz, True)
