"""The instructions of a virtual-8086 task that trap to the monitor (real
IOPL 0, v86.py), done against the guest's virtual EFLAGS as its own CPU
would do them in virtual-8086 mode (SDM vol. 3A 20.2.7, 20.3; vol. 2
CLI/STI/PUSHF/POPF/INT n/IRET/IN/OUT):

* IOPL-sensitive (CLI, STI, PUSHF, POPF, INT n, IRET): at virtual IOPL 3
  they run as at IOPL 3 (IF, the flags image and the real-mode style IRET
  that cannot change IOPL or VM); below it, with the guest's CR4.VME, in
  their virtual-interrupt forms (VIF, VIP; INT n by Table 20-2, perhaps
  redirected to the 8086 program's IVT), by the rules of cpu/semantics/
  vme.py the soft CPU uses too; otherwise the #GP(0) they raised is the
  guest's own, and goes to its kernel (REFLECT). VIF and VIP live in the
  real EFLAGS (the real CR4 has no VME, so the real CPU ignores them);
* INT3 and INTO are not IOPL-sensitive: they fault on the real IDT's DPL-0
  gates and are delivered through the guest's IDT with its DPL check;
* IN/OUT/INS/OUTS consult only the guest TSS's I/O permission bitmap in
  virtual-8086 mode, whatever IOPL is (SDM 20.2.8.1).

Anything else that faulted (HLT, a segment-limit #GP, ...) faults natively
too, and is reflected unchanged."""
from __future__ import annotations

from ringvisor.monitors.common import delivery, emulate as E
from ringvisor.monitors.common.delivery import EFLAGS_WRITABLE, SOFT, SS_FAULT
from ringvisor.monitors.common.guest_mmu import GP, VirtualFault
from ringvisor.monitors.common.outcomes import JUMPED, NEXT, REFLECT, SHADOW
from ringvisor.monitors.common.v86 import CS_LIMIT
from ringvisor.cpu.semantics import vme
from ringvisor.cpu.semantics.segments import v86_segment
from ringvisor.monitors.common.vcpu import IOPL, RF, VM
from ringvisor.cpu.architecture import OF
# What POPF (and, with RF, IRET) may change at CPL 3 = IOPL 3 (SDM POPF table): not IOPL, not VM.
POPF_WRITABLE = EFLAGS_WRITABLE & ~(VM | IOPL | RF)


def _sensitive(mon) -> bool:
    """True below IOPL 3: the instruction #GPs for the guest, or, with its
    CR4.VME, takes its virtual-interrupt form (`_vme`)."""
    return mon.vcpu.iopl < 3


def _vme(mon) -> bool:
    return bool(mon.vcpu.cr4 & vme.CR4_VME)


# --- the 16-bit stack (SS is a 64 KiB v86 segment) -----------------------------------------
def _stack_at(st, delta: int, n: int) -> int:
    sp = (st.esp + delta) & 0xFFFF
    if sp + n - 1 > 0xFFFF:
        raise VirtualFault(SS_FAULT, 0)           # the operand straddles the segment limit
    return (st.ss.base + sp) & 0xFFFFFFFF


def _push(mon, st, value: int, n: int) -> None:
    mon.gmmu.write_u(_stack_at(st, -n, n), n, value, user=True)
    st.esp = (st.esp & 0xFFFF0000) | ((st.esp - n) & 0xFFFF)


def _read(mon, st, k: int, n: int) -> int:
    return mon.gmmu.read_u(_stack_at(st, k * n, n), n, user=True)


def _set_flags(mon, st, flags: int) -> None:
    v = mon.vcpu
    v.set_from_flags(flags)
    st.eflags = v.real_flags(flags)


# --- the handlers --------------------------------------------------------------------------
def cli(mon, st, ins):
    if _sensitive(mon):
        if not _vme(mon):
            return REFLECT
        st.eflags = vme.cli_virtual(st.eflags)
        return NEXT
    mon.vcpu.if_ = False
    mon.note_if_cleared("CLI (virtual-8086 mode)", st)
    return NEXT


def sti(mon, st, ins):
    if _sensitive(mon):
        new = vme.sti_virtual(st.eflags) if _vme(mon) else None
        if new is None:
            return REFLECT                          # #GP(0) while VIP is set
        st.eflags = new
        return NEXT
    was, mon.vcpu.if_ = mon.vcpu.if_, True
    return NEXT if was else SHADOW


def pushf(mon, st, ins):
    if _sensitive(mon):
        image = vme.pushf_image(mon.vcpu.virtual_flags(st.eflags), ins.osz) if _vme(mon) else None
        if image is None:
            return REFLECT
        _push(mon, st, image, 2)
        return NEXT
    flags = mon.vcpu.virtual_flags(st.eflags) & ~(VM | RF)
    _push(mon, st, flags & (0xFFFF if ins.osz == 2 else 0xFFFFFFFF), ins.osz)
    return NEXT


def _popped(mon, st, new: int, osz: int, writable: int) -> int:
    old = mon.vcpu.virtual_flags(st.eflags)
    if osz == 2:
        writable &= 0xFFFF
    return (old & ~writable) | (new & writable) | 2


def _popped_vme(mon, st, popped: int, osz: int):
    new = vme.popped_virtual(mon.vcpu.virtual_flags(st.eflags), popped, osz)
    if new is not None:
        _set_flags(mon, st, new)
    return new


def popf(mon, st, ins):
    if _sensitive(mon):
        if not _vme(mon) or ins.osz != 2 or _popped_vme(mon, st, _read(mon, st, 0, 2), 2) is None:
            return REFLECT
        st.esp = (st.esp & 0xFFFF0000) | ((st.esp + 2) & 0xFFFF)
        return NEXT
    new = _read(mon, st, 0, ins.osz)
    was = mon.vcpu.if_
    _set_flags(mon, st, _popped(mon, st, new, ins.osz, POPF_WRITABLE))
    st.esp = (st.esp & 0xFFFF0000) | ((st.esp + ins.osz) & 0xFFFF)
    return SHADOW if mon.vcpu.if_ and not was else NEXT


def iret(mon, st, ins):
    """RETURN-FROM-VIRTUAL-8086-MODE at IOPL 3: a real-mode style return."""
    n = ins.osz
    if _sensitive(mon) and (not _vme(mon) or n != 2):
        return REFLECT
    eip, cs, new = _read(mon, st, 0, n), _read(mon, st, 1, n) & 0xFFFF, _read(mon, st, 2, n)
    if _sensitive(mon):                             # VME: VIF from the popped IF
        if eip > CS_LIMIT or _popped_vme(mon, st, new, 2) is None:
            return REFLECT
    else:
        if eip > CS_LIMIT:
            raise VirtualFault(GP, 0)
        _set_flags(mon, st, _popped(mon, st, new, n, POPF_WRITABLE | RF))
    st.cs, st.eip = v86_segment(cs), eip
    st.esp = (st.esp & 0xFFFF0000) | ((st.esp + 3 * n) & 0xFFFF)
    return JUMPED


def _interrupt(mon, st, ins, vector: int):
    delivery.raise_event(mon, st, vector, None, SOFT, (st.eip + ins.length) & CS_LIMIT)
    mon.count_reflected(vector, "software")
    return JUMPED


def int_n(mon, st, ins):
    """SDM Table 20-2, by the guest's CR4.VME, IOPL and its TSS's bitmap."""
    v, vector = mon.vcpu, ins.imm & 0xFF
    action = vme.ACTIONS[vme.method(v.cr4, v.iopl, lambda: _redirection_bit(mon, vector))]
    if action == vme.GP_FAULT:
        return REFLECT
    if action == vme.REDIRECT:
        return _redirect(mon, st, ins, vector)
    return _interrupt(mon, st, ins, vector)


def _redirection_bit(mon, vector: int) -> int:
    """vme.redirection_bit in the guest's TSS, through the guest's paging."""
    bit = vme.redirection_bit(mon.vcpu.tr, mon.gmmu.read_u, vector)
    if bit is None:
        raise VirtualFault(GP, 0)
    return bit


def _redirect(mon, st, ins, vector: int):
    """Methods 5 and 6: to the 8086 program's handler through its IVT."""
    ip, cs = mon.gmmu.read_u(vector * 4, 2), mon.gmmu.read_u(vector * 4 + 2, 2)
    image, flags = vme.redirected_frame(mon.vcpu.virtual_flags(st.eflags), mon.vcpu.iopl)
    sp = st.esp
    try:
        for value in (image, st.cs.selector, (st.eip + ins.length) & CS_LIMIT):
            _push(mon, st, value, 2)
    except VirtualFault:
        st.esp = sp
        raise
    st.cs, st.eip = v86_segment(cs), ip
    _set_flags(mon, st, flags)
    mon.stats["v86_redirected"] += 1
    return JUMPED


def int3(mon, st, ins):
    return _interrupt(mon, st, ins, 3)


def into(mon, st, ins):
    return _interrupt(mon, st, ins, 4) if st.eflags & OF else NEXT


def port_io(mon, st, ins):
    port, size = E._port_and_size(ins, st)
    if not E.io_bitmap_allows(mon, port, size):
        return REFLECT
    return E.do_io(mon, st, ins, port, size)


HANDLERS = {"CLI": cli, "STI": sti, "PUSHF": pushf, "POPF": popf, "IRET": iret,
            "INT": int_n, "INT3": int3, "INTO": into,
            **{mn: port_io for mn in ("IN", "OUT", "INSB", "INS", "OUTSB", "OUTS")}}


def emulate(mon, st, ins) -> str:
    """Emulate `ins`, which faulted in virtual-8086 mode."""
    fn = None if ins.ud or ins.row is None else HANDLERS.get(ins.row.mnemonic)
    if fn is None:
        return REFLECT
    result = fn(mon, st, ins)
    if result != REFLECT:
        mon.stats["v86_emulated"] += 1
    if result in (NEXT, SHADOW):
        st.eip = (st.eip + ins.length) & CS_LIMIT
    return result
