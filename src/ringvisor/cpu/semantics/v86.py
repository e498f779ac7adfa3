"""Virtual-8086 mode (SDM vol. 3A ch. 20, "8086 Emulation"; vol. 2 IRET and
INT n): entering it (IRET at CPL 0 popping EFLAGS.VM=1; a task switch to a
TSS whose EFLAGS has VM=1: task.py) and interrupts and exceptions out of
it to a ring-0 handler through an interrupt or trap gate. The IRET that
stays in it is interrupts.py's (a real-mode style return at IOPL 3).

In virtual-8086 mode CPL is 3 and every segment register is loaded the
real-mode way (`segments.v86_segment`). The IOPL-sensitive instructions
(CLI, STI, PUSHF, POPF, INT n, IRET) raise #GP(0) below IOPL 3 unless
CR4.VME gives them their virtual-interrupt forms (vme.py; INT n by Table
20-2, redirected here to the 8086 program's IVT), and I/O always consults
the TSS I/O permission bitmap (protection.check)."""
from __future__ import annotations

from ringvisor.cpu.core import (CS, DS, EFLAGS_WRITABLE, ES, FS, GS, IF, NT, RF, SS, SSF, TF,
                                VM, CpuFault, gp)
from ringvisor.cpu.semantics import transfer, vme
from ringvisor.cpu.semantics.segments import null_segment, v86_segment
from ringvisor.cpu.vmx.exits import VmExitSignal

_POPPED_SEGS = (ES, DS, FS, GS)      # popped by IRET in this order after SS:ESP
_PUSHED_SEGS = (GS, FS, DS, ES)      # pushed by an interrupt in this order before SS:ESP


def enter(cpu, eflags: int, selectors: dict[int, int], esp: int, eip: int) -> None:
    """Load the state of virtual-8086 mode: EFLAGS first (VM=1, so the
    segment caches below are 16-bit), then the six segment registers, ESP,
    EIP and CPL 3."""
    cpu.flags = eflags | VM | 2
    for i, sel in selectors.items():
        cpu.set_seg(i, v86_segment(sel))
    cpu.r[4] = esp
    cpu.eip = eip
    cpu.set_cpl(3)


def iret_to_v86(cpu, sp: int, smask: int, eip: int, cs: int, eflags: int) -> None:
    """IRET (32-bit operand size) at CPL 0 whose EFLAGS image has VM=1
    (SDM IRET, RETURN-TO-VIRTUAL-8086-MODE): pops ESP, SS, ES, DS, FS, GS
    after EIP, CS, EFLAGS."""
    at = [(sp + 12 + 4 * k) & smask for k in range(6)]
    # All 24 bytes are read before anything changes: a fault (#SS(0) past
    # the stack limit, #PF) leaves the CPU as it was.
    esp = cpu.rd(SS, at[0], 4)
    ss = cpu.rd(SS, at[1], 4) & 0xFFFF
    segs = [cpu.rd(SS, a, 4) & 0xFFFF for a in at[2:]]
    if eip > 0xFFFF:                   # beyond the limit of a virtual-8086 CS
        raise gp(0)
    selectors = {CS: cs & 0xFFFF, SS: ss, **dict(zip(_POPPED_SEGS, segs))}
    enter(cpu, eflags & (EFLAGS_WRITABLE | vme.VIF | vme.VIP), selectors, esp, eip)


def deliver_from_v86(cpu, gate, code_desc, sel: int, code: int | None, ext: int,
                     fault: bool) -> None:
    """An interrupt or exception taken in virtual-8086 mode through an
    interrupt or trap gate whose code segment is non-conforming at DPL 0
    (the caller checked it; SDM INT n, INTERRUPT-FROM-VIRTUAL-8086-MODE):
    to the ring-0 stack of the TSS, pushing GS, FS, DS, ES, SS, ESP, EFLAGS,
    CS, EIP (and the error code), with DS, ES, FS and GS then null."""
    gsz = 4 if gate.type & 8 else 2
    mask = 0xFFFFFFFF if gsz == 4 else 0xFFFF
    off = gate.gate_offset
    flags = cpu.flags | (RF if fault else 0)
    old = {i: cpu.segs[i].selector for i in range(6)}
    old_esp, old_eip = cpu.r[4], cpu.eip
    saved = transfer.save_state(cpu)
    try:
        ss, seg, esp = transfer.load_inner_stack(cpu, 0, ext)
        # VM clears before the ring-0 segments are cached (they are 32-bit).
        cpu.flags &= ~(VM | TF | NT | RF)
        cpu.set_cpl(0)
        transfer.switch_stack(cpu, seg, esp)
        n = (9 + (code is not None)) * gsz
        smask = 0xFFFFFFFF if cpu.stack32 else 0xFFFF
        try:
            cpu.check_wr(SS, (cpu.r[4] - n) & smask, n)
        except CpuFault as f:
            if f.vector != SSF:
                raise
            raise CpuFault(SSF, (ss & 0xFFFC) | ext) from None
        if off > code_desc.limit:
            raise gp(ext)
        for i in _PUSHED_SEGS:
            cpu.push(old[i], gsz)
        cpu.push(old[SS], gsz)
        cpu.push(old_esp & mask, gsz)
        cpu.push(flags & mask, gsz)
        cpu.push(old[CS], gsz)
        cpu.push(old_eip & mask, gsz)
        if code is not None:
            cpu.push(code, gsz)
    except (CpuFault, VmExitSignal):
        transfer.restore_state(cpu, saved)
        raise
    for i in _PUSHED_SEGS:
        cpu.set_seg(i, null_segment(0))
    transfer.load_cs(cpu, code_desc, sel, 0)
    cpu.eip = off
    if gate.type & 1 == 0:             # interrupt gate
        cpu.flags &= ~IF


def redirection_bit(cpu, vector: int) -> int:
    """`vector`'s bit in the TSS's interrupt redirection bitmap, the 32
    bytes below the I/O map base (vme.redirection_bit); #GP(0) without it."""
    bit = None if cpu.tr.unusable else vme.redirection_bit(cpu.tr, cpu.rd_sys, vector)
    if bit is None:
        raise gp(0)
    return bit


def redirect(cpu, vector: int) -> None:
    """Methods 5 and 6 of Table 20-2: INT n to the 8086 program's own
    handler, through the IVT at linear 0 (vector * 4: IP, then CS), pushing
    FLAGS, CS, IP on its 16-bit stack; nothing changes if a push faults."""
    ip = cpu.rd_sys(vector * 4, 2)
    cs = cpu.rd_sys(vector * 4 + 2, 2)
    image, flags = vme.redirected_frame(cpu.flags, cpu.iopl)
    sp = cpu.r[4]
    try:
        for value in (image, cpu.segs[CS].selector, cpu.eip & 0xFFFF):
            cpu.push(value, 2)
    except CpuFault:
        cpu.r[4] = sp
        raise
    cpu.set_seg(CS, v86_segment(cs))
    cpu.eip = ip
    cpu.flags = flags
