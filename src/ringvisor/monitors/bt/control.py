"""Control transfers the translator cannot resolve ahead of time, emulated
by the monitor for translated kernel code: the target is a guest EIP the
monitor then looks up (or translates) in the cache.

    RET [imm16]            pop the guest return EIP (the translated CALL pushed a guest EIP)
    JMP r/m32, CALL r/m32  the target from the guest's register or memory
    JMP/CALL ptr16:32, m16:32
                           to a code segment at the same privilege (call gates and
                           task switches are not emulated, said plainly)

Each handler returns emulate.JUMPED with st.eip the guest target; a fault
the guest would take is a VirtualFault (nothing has changed then).
"""
from __future__ import annotations

from ringvisor.monitors.bt.sensitive import pop, push, virtual_selector
from ringvisor.monitors.common.delivery import NP, Unsupported, guest_descriptor
from ringvisor.monitors.common.emulate import JUMPED
from ringvisor.monitors.common.guest_mmu import GP, VirtualFault
from ringvisor.monitors.common.operands import read_memory, reg


def _check_limit(st, eip: int) -> int:
    if eip > st.cs.limit:
        raise VirtualFault(GP, 0)
    return eip


def ret(mon, st, ins):
    esp = st.esp
    target = pop(mon, st, ins.osz)
    try:
        _check_limit(st, target)
    except VirtualFault:
        st.esp = esp
        raise
    if ins.row.operands:                                  # RET imm16: release the arguments
        smask = 0xFFFFFFFF if st.ss.db else 0xFFFF
        st.esp = (st.esp & ~smask) | ((st.esp + (ins.imm & 0xFFFF)) & smask)
    st.eip = target
    return JUMPED


def _near_target(mon, st, ins) -> int:
    return read_memory(mon, ins, st, ins.osz) if ins.mem else reg(st, ins.rm, ins.osz)


def indirect_jmp(mon, st, ins):
    st.eip = _check_limit(st, _near_target(mon, st, ins))
    return JUMPED


def indirect_call(mon, st, ins):
    target = _check_limit(st, _near_target(mon, st, ins))
    push(mon, st, ins.osz, (st.eip + ins.length) & 0xFFFFFFFF)
    st.eip = target
    return JUMPED


def _far_pointer(mon, st, ins) -> tuple[int, int]:
    if ins.row.opcode in ("EA", "9A"):
        return ins.imm2 & 0xFFFF, ins.imm
    if not ins.mem:
        raise VirtualFault(6, None)
    return read_memory(mon, ins, st, 2, disp=ins.osz), read_memory(mon, ins, st, ins.osz)


def far_transfer(mon, st, ins):
    sel, offset = _far_pointer(mon, st, ins)
    cpl = mon.vcpu.cpl
    if (sel & 0xFFFC) == 0:
        raise VirtualFault(GP, 0)
    d = guest_descriptor(mon, sel)
    if not d.s:
        raise Unsupported(f"far {ins.row.mnemonic} through system descriptor {sel:#06x} (a gate or "
                          "task): the bt monitor does not emulate call gates or task switches")
    if not d.code or (d.conforming and d.dpl > cpl) or \
            (not d.conforming and ((sel & 3) > cpl or d.dpl != cpl)):
        raise VirtualFault(GP, sel & 0xFFFC)
    if not d.present:
        raise VirtualFault(NP, sel & 0xFFFC)
    if offset > d.limit:
        raise VirtualFault(GP, 0)
    if ins.row.mnemonic == "CALL":
        esp = st.esp
        push(mon, st, ins.osz, virtual_selector(st, "cs", cpl))
        try:
            push(mon, st, ins.osz, (st.eip + ins.length) & 0xFFFFFFFF)
        except VirtualFault:
            st.esp = esp
            raise
    mon.load_code(st, (sel & ~3) | cpl, cpl)
    st.eip = offset
    return JUMPED


HANDLERS = {"ret": ret, "indirect jmp": indirect_jmp, "indirect call": indirect_call,
            "far jmp": far_transfer, "far call": far_transfer}
