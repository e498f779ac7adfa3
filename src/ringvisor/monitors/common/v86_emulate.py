"""The instructions of a virtual-8086 task that trap to the monitor (real
IOPL 0, v86.py), done against the guest's virtual EFLAGS as its own CPU
would do them in virtual-8086 mode without VME (SDM vol. 3A 20.2.7,
vol. 2 CLI/STI/PUSHF/POPF/INT n/IRET/IN/OUT):

* IOPL-sensitive (CLI, STI, PUSHF, POPF, INT n, IRET): at virtual IOPL 3
  they run as at IOPL 3 (IF, the flags image and the real-mode style IRET
  that cannot change IOPL or VM); below it the #GP(0) they raised is the
  guest's own, and goes to its kernel (REFLECT);
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
from ringvisor.cpu.semantics.segments import v86_segment
from ringvisor.monitors.common.vcpu import IOPL, RF, VM

OF = 0x800
# What POPF (and, with RF, IRET) may change at CPL 3 = IOPL 3 (SDM POPF table): not IOPL, not VM.
POPF_WRITABLE = EFLAGS_WRITABLE & ~(VM | IOPL | RF)


def _sensitive(mon) -> bool:
    """True when an IOPL-sensitive instruction #GPs for the guest too."""
    return mon.vcpu.iopl < 3


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
        return REFLECT
    mon.vcpu.if_ = False
    mon.note_if_cleared("CLI (virtual-8086 mode)", st)
    return NEXT


def sti(mon, st, ins):
    if _sensitive(mon):
        return REFLECT
    was, mon.vcpu.if_ = mon.vcpu.if_, True
    return NEXT if was else SHADOW


def pushf(mon, st, ins):
    if _sensitive(mon):
        return REFLECT
    flags = mon.vcpu.virtual_flags(st.eflags) & ~(VM | RF)
    _push(mon, st, flags & (0xFFFF if ins.osz == 2 else 0xFFFFFFFF), ins.osz)
    return NEXT


def _popped(mon, st, new: int, osz: int, writable: int) -> int:
    old = mon.vcpu.virtual_flags(st.eflags)
    if osz == 2:
        writable &= 0xFFFF
    return (old & ~writable) | (new & writable) | 2


def popf(mon, st, ins):
    if _sensitive(mon):
        return REFLECT
    new = _read(mon, st, 0, ins.osz)
    was = mon.vcpu.if_
    _set_flags(mon, st, _popped(mon, st, new, ins.osz, POPF_WRITABLE))
    st.esp = (st.esp & 0xFFFF0000) | ((st.esp + ins.osz) & 0xFFFF)
    return SHADOW if mon.vcpu.if_ and not was else NEXT


def iret(mon, st, ins):
    """RETURN-FROM-VIRTUAL-8086-MODE at IOPL 3: a real-mode style return."""
    if _sensitive(mon):
        return REFLECT
    n = ins.osz
    eip, cs, new = _read(mon, st, 0, n), _read(mon, st, 1, n) & 0xFFFF, _read(mon, st, 2, n)
    if eip > CS_LIMIT:
        raise VirtualFault(GP, 0)
    flags = _popped(mon, st, new, n, POPF_WRITABLE | RF)
    st.cs, st.eip = v86_segment(cs), eip
    st.esp = (st.esp & 0xFFFF0000) | ((st.esp + 3 * n) & 0xFFFF)
    _set_flags(mon, st, flags)
    return JUMPED


def _interrupt(mon, st, ins, vector: int):
    delivery.raise_event(mon, st, vector, None, SOFT, (st.eip + ins.length) & CS_LIMIT)
    mon.count_reflected(vector, "software")
    return JUMPED


def int_n(mon, st, ins):
    if _sensitive(mon):
        return REFLECT
    return _interrupt(mon, st, ins, ins.imm & 0xFF)


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
