"""The sensitive-but-unprivileged instructions, emulated for translated
kernel code so that they give the *virtual* CPU's answer (the x86 holes a
trap-and-emulate monitor cannot close, docs/monitors.md "What leaks"):

    PUSHF / POPF       the virtual IF, IOPL and NT (POPF at virtual CPL 0 sets them)
    SGDT / SIDT        the guest's GDTR / IDTR, not the monitor's tables
    SLDT / STR         the guest's LDTR / TR selectors
    SMSW               the guest's CR0
    MOV r/m, CS|SS     PUSH CS|SS: the selector with RPL = virtual CPL (0)
    LAR LSL VERR VERW  against the guest's descriptors at the virtual CPL (the
                       soft CPU's rules, cpu/semantics/protection.py)

Same operand rules as the soft CPU's semantics (cpu/semantics/protection.py): a
selector stored to a 32-bit register is zero-extended, to memory 16 bits.
Each handler returns emulate.NEXT; a fault the guest would take is a
VirtualFault.
"""
from __future__ import annotations

from ringvisor.cpu.semantics.protection import lar_value, lsl_value, verr_ok, verw_ok
from ringvisor.monitors.common.delivery import Unsupported, _popped_flags, guest_descriptor
from ringvisor.monitors.common.emulate import NEXT, UD
from ringvisor.monitors.common.guest_mmu import VirtualFault
from ringvisor.monitors.common.operands import effective, linear, read_rm16, set_reg
from ringvisor.monitors.common.vcpu import RF, VM

ZF = 0x40


# --- operand helpers ----------------------------------------------------------------------
def write_memory(mon, ins, st, n: int, value: int, disp: int = 0) -> None:
    seg, off = effective(ins, st)
    off = (off + disp) & (0xFFFF if ins.asz == 2 else 0xFFFFFFFF)
    mon.gmmu.write_u(linear(st, seg, off, n), n, value, user=mon.vcpu.cpl == 3)


def store_selector(mon, ins, st, value: int) -> None:
    if ins.mem:
        write_memory(mon, ins, st, 2, value & 0xFFFF)
    else:
        set_reg(st, ins.rm, ins.osz, value)


def push(mon, st, n: int, value: int) -> None:
    smask = 0xFFFFFFFF if st.ss.db else 0xFFFF
    esp = (st.esp - n) & smask
    mon.gmmu.write_u(linear(st, 2, esp, n), n, value, user=mon.vcpu.cpl == 3)
    st.esp = (st.esp & ~smask) | esp


def pop(mon, st, n: int) -> int:
    smask = 0xFFFFFFFF if st.ss.db else 0xFFFF
    value = mon.gmmu.read_u(linear(st, 2, st.esp & smask, n), n, user=mon.vcpu.cpl == 3)
    st.esp = (st.esp & ~smask) | ((st.esp + n) & smask)
    return value


def virtual_selector(st, name: str, cpl: int) -> int:
    return (getattr(st, name).selector & ~3) | cpl


# --- flags -----------------------------------------------------------------------------------
def pushf(mon, st, ins):
    value = mon.vcpu.virtual_flags(st.eflags) & ~(RF | VM)
    push(mon, st, ins.osz, value & (0xFFFF if ins.osz == 2 else 0xFFFFFFFF))
    return NEXT


def popf(mon, st, ins):
    v = mon.vcpu
    new = _popped_flags(v, st.eflags, pop(mon, st, ins.osz), ins.osz) & ~RF
    was = v.if_
    v.set_from_flags(new)
    st.eflags = v.real_flags(new)
    if was and not v.if_:
        mon.note_if_cleared("POPF", st)
    return NEXT


# --- descriptor-table and control registers ---------------------------------------------------
def _store_table(mon, st, ins, t):
    if not ins.mem:
        raise VirtualFault(UD, None)
    write_memory(mon, ins, st, 2, t.limit)
    write_memory(mon, ins, st, 4, t.base if ins.osz == 4 else t.base & 0xFFFFFF, disp=2)
    return NEXT


def sgdt(mon, st, ins):
    return _store_table(mon, st, ins, mon.vcpu.gdtr)


def sidt(mon, st, ins):
    return _store_table(mon, st, ins, mon.vcpu.idtr)


def sldt(mon, st, ins):
    store_selector(mon, ins, st, mon.vcpu.ldtr.selector)
    return NEXT


def str_(mon, st, ins):
    store_selector(mon, ins, st, mon.vcpu.tr.selector)
    return NEXT


def smsw(mon, st, ins):
    cr0 = mon.vcpu.cr0
    store_selector(mon, ins, st, cr0 if not ins.mem and ins.osz == 4 else cr0 & 0xFFFF)
    return NEXT


# --- CS and SS ------------------------------------------------------------------------------
def mov_from_seg(mon, st, ins):
    store_selector(mon, ins, st, virtual_selector(st, ("es", "cs", "ss")[ins.reg], mon.vcpu.cpl))
    return NEXT


def push_seg(mon, st, ins):
    name = "cs" if ins.row.opcode == "0E" else "ss"
    push(mon, st, ins.osz, virtual_selector(st, name, mon.vcpu.cpl))
    return NEXT


# --- descriptor checks ----------------------------------------------------------------------------
def _descriptor(mon, sel: int):
    """The guest's descriptor for `sel`, or None where the CPU would clear ZF."""
    if (sel & 0xFFFC) == 0:
        return None
    try:
        return guest_descriptor(mon, sel)
    except VirtualFault:
        return None
    except Unsupported:
        return None                              # an LDT selector: no LDT is shadowed


def _zf(st, ok: bool) -> None:
    st.eflags = (st.eflags | ZF) if ok else (st.eflags & ~ZF)


def _load_field(mon, st, ins, value_of):
    sel = read_rm16(mon, ins, st)
    value = value_of(_descriptor(mon, sel), sel, mon.vcpu.cpl, ins.osz)
    if value is not None:
        set_reg(st, ins.reg, ins.osz, value)
    _zf(st, value is not None)
    return NEXT


def lar(mon, st, ins):
    return _load_field(mon, st, ins, lar_value)


def lsl(mon, st, ins):
    return _load_field(mon, st, ins, lsl_value)


def _verify(mon, st, ins, ok):
    sel = read_rm16(mon, ins, st)
    _zf(st, ok(_descriptor(mon, sel), sel, mon.vcpu.cpl))
    return NEXT


def verr(mon, st, ins):
    return _verify(mon, st, ins, verr_ok)


def verw(mon, st, ins):
    return _verify(mon, st, ins, verw_ok)


HANDLERS = {"pushf": pushf, "popf": popf, "sgdt": sgdt, "sidt": sidt, "sldt": sldt, "str": str_,
            "smsw": smsw, "mov from cs/ss": mov_from_seg, "push cs": push_seg, "push ss": push_seg,
            "lar": lar, "lsl": lsl, "verr": verr, "verw": verw}
