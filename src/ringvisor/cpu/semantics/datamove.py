"""Data transfer (SDM vol. 1 7.3.1): MOV MOVZX MOVSX XCHG LEA XLAT, stack
(PUSH POP PUSHA POPA ENTER LEAVE), BOUND and NOP."""
from __future__ import annotations

from ringvisor.cpu.core import BR, CS, DS, SS, CpuFault, ud
from ringvisor.cpu.flags import MASK
from ringvisor.cpu.semantics.registry import sem


@sem("MOV")
def mov(cpu, ins):
    ins.s0(cpu, ins, ins.g1(cpu, ins))


@sem("MOVZX")
def movzx(cpu, ins):
    ins.s0(cpu, ins, ins.g1(cpu, ins))


@sem("MOVSX")
def movsx(cpu, ins):
    v = ins.g1(cpu, ins)
    w1 = ins.w1
    if v & (1 << (8 * w1 - 1)):
        v -= 1 << (8 * w1)
    ins.s0(cpu, ins, v & MASK[ins.w])


@sem("XCHG")
def xchg(cpu, ins):
    a = ins.g0(cpu, ins)
    b = ins.g1(cpu, ins)
    ins.wb0(cpu, ins, b)
    ins.s1(cpu, ins, a)


@sem("NOP")
def nop(cpu, ins):
    # F3 90 is PAUSE: a spin-wait hint, a NOP unless the CPU yields on it
    # (in VMX non-root operation the VMM's PAUSE exiting decides, not the machine).
    if ins.rep == 3:
        if cpu.vmx is not None:
            cpu.vmx.pause(cpu)
        elif cpu.pause_yields:
            cpu.paused = True
            cpu.pause_count += 1


@sem("LEA")
def lea(cpu, ins):
    ins.s0(cpu, ins, ins.eaf(cpu, ins) & MASK[ins.osz])


@sem("XLAT")
def xlat(cpu, ins):
    r = cpu.r
    base = r[3] if ins.asz == 4 else r[3] & 0xFFFF
    a = (base + (r[0] & 0xFF)) & MASK[ins.asz]
    v = cpu.rd(ins.seg if ins.seg >= 0 else DS, a, 1)
    r[0] = (r[0] & 0xFFFFFF00) | v


@sem("PUSH")
def push(cpu, ins):
    v = ins.g0(cpu, ins)
    cpu.push(v, ins.osz)


@sem("POP")
def pop(cpu, ins):
    op = ins.row.operands[0]
    if op.kind == "seg":
        from ringvisor.cpu.semantics.segments import load_seg
        stack32 = cpu.stack32          # the width of the stack popped from, not of a new SS
        v = cpu.rd(SS, cpu.r[4] if stack32 else cpu.r[4] & 0xFFFF, 2)
        load_seg(cpu, op.reg, v)
        r = cpu.r
        r[4] = (r[4] + ins.osz) & 0xFFFFFFFF if stack32 else \
            (r[4] & 0xFFFF0000) | ((r[4] + ins.osz) & 0xFFFF)
        if op.reg == SS:
            cpu.shadow = True
        return
    v = cpu.pop(ins.osz)
    ins.s0(cpu, ins, v)


@sem("PUSHA")
def pusha(cpu, ins):
    w = ins.osz
    r = cpu.r
    m = MASK[w]
    sp = r[4]
    for i in (0, 1, 2, 3):
        cpu.push(r[i] & m, w)
    cpu.push(sp & m, w)
    for i in (5, 6, 7):
        cpu.push(r[i] & m, w)


@sem("POPA")
def popa(cpu, ins):
    w = ins.osz
    from ringvisor.cpu.isa.operands import reg_set
    vals = [cpu.pop(w) for _ in range(8)]
    for i, v in zip((7, 6, 5, 4, 3, 2, 1, 0), vals):
        if i != 4:
            reg_set(cpu, w, i, v)


@sem("ENTER")
def enter(cpu, ins):
    w = ins.osz
    size = ins.imm & 0xFFFF
    level = ins.imm2 & 31
    r = cpu.r
    cpu.push(r[5] & MASK[w], w)
    frame = r[4]
    if level:
        smask = 0xFFFFFFFF if cpu.stack32 else 0xFFFF
        bp = r[5]
        for _ in range(level - 1):
            bp = (bp - w) & smask
            cpu.push(cpu.rd(SS, bp, w), w)
        cpu.push(frame & MASK[w], w)
    if w == 4:
        r[5] = frame
    else:
        r[5] = (r[5] & 0xFFFF0000) | (frame & 0xFFFF)
    # The new stack top must be writable (the SDM: #SS if it is outside the limit).
    cpu.sp_add(-size)
    sp = r[4] if cpu.stack32 else r[4] & 0xFFFF
    if size:
        cpu.check_wr(SS, sp, 1)


@sem("LEAVE")
def leave(cpu, ins):
    r = cpu.r
    if cpu.stack32:
        r[4] = r[5]
    else:
        r[4] = (r[4] & 0xFFFF0000) | (r[5] & 0xFFFF)
    v = cpu.pop(ins.osz)
    if ins.osz == 4:
        r[5] = v
    else:
        r[5] = (r[5] & 0xFFFF0000) | v


@sem("BOUND")
def bound(cpu, ins):
    if not ins.mem:
        raise ud()
    w = ins.osz
    a = ins.eaf(cpu, ins)
    lo = cpu.rd(ins.seg, a, w)
    hi = cpu.rd(ins.seg, (a + w) & MASK[ins.asz], w)
    idx = ins.g0(cpu, ins)
    sb = 1 << (8 * w - 1)

    def s(v):
        return v - (sb << 1) if v & sb else v
    if s(idx) < s(lo) or s(idx) > s(hi):
        raise CpuFault(BR)


_ = CS
