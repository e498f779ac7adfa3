"""The x87 escapes (D8-DF) and WAIT: from a decoded instruction to the FPU
(cpu/x87, SDM vol. 1 ch. 8), and the FPU's outcomes back to the CPU's
exceptions (#NM, #MF, #UD) or the PC's FERR#/IRQ13 path.

The FPU sees memory through `Operand` (offsets from the effective address,
checked and translated by the CPU's own memory path, so segment limits and
paging fault as for any instruction) and the CPU through `Context` (CR0,
CS:EIP of the instruction, operand size, mode; EFLAGS for FCOMI and FCMOVcc;
AX for FNSTSW AX)."""
from __future__ import annotations

from ringvisor.cpu import x87
from ringvisor.cpu.architecture import CR0_PE, MASKS, NM, VM, CpuFault, ud
from ringvisor.cpu.semantics.registry import sem

MF = 16
EFLAGS_FPU = 0x8D5                 # CF PF AF ZF SF OF: what FCOMI/FUCOMI may change


class Operand:
    """The memory operand, as the FPU reads and writes it."""
    __slots__ = ("cpu", "s", "ea", "seg", "mask")

    def __init__(self, cpu, ins):
        self.cpu, self.s = cpu, ins.seg
        self.mask = MASKS[ins.asz]
        self.ea = ins.eaf(cpu, ins)
        self.seg = cpu.segs[ins.seg].selector

    def read(self, offset: int, size: int) -> int:
        cpu, s, a, value = self.cpu, self.s, self.ea + offset, 0
        for i in range(0, size, 4):
            n = min(4, size - i)
            value |= cpu.rd(s, (a + i) & self.mask, n) << (8 * i)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        cpu, s, a = self.cpu, self.s, (self.ea + offset) & self.mask
        cpu.check_wr(s, a, size)           # fault before any byte changes
        for i in range(0, size, 4):
            n = min(4, size - i)
            cpu.wr(s, (a + i) & self.mask, n, (value >> (8 * i)) & MASKS[n])


class Context:
    __slots__ = ("cr0", "cs", "eip", "o32", "protected", "eflags", "ax")

    def __init__(self, cpu, ins):
        self.cr0 = cpu.cr0
        self.cs = cpu.segs[1].selector
        self.eip = cpu.cur_eip
        self.o32 = ins.osz == 4
        self.protected = bool(cpu.cr0 & CR0_PE) and not cpu.flags & VM
        self.eflags = cpu.flags
        self.ax = None


def run(cpu, ins, opcode: int, modrm: int, mem) -> None:
    ctx = Context(cpu, ins)
    outcome = x87.execute(cpu.fpu, opcode, modrm, mem, ctx)
    if outcome == x87.DONE:
        if ctx.eflags != cpu.flags:
            cpu.flags = (cpu.flags & ~EFLAGS_FPU) | (ctx.eflags & EFLAGS_FPU)
        if ctx.ax is not None:
            cpu.r[0] = (cpu.r[0] & 0xFFFF0000) | (ctx.ax & 0xFFFF)
    elif outcome == x87.NM:
        raise CpuFault(NM)
    elif outcome == x87.MF:
        raise CpuFault(MF)
    elif outcome == x87.UD:
        raise ud()
    else:                               # FERR#: the PC raises IRQ13; the instruction waits
        cpu.eip = cpu.cur_eip
        cpu.fpu_error()


@sem("ESC")
def esc(cpu, ins):
    if cpu.fpu is None:                 # a CPU model without an FPU
        if cpu.cr0 & 0xC:               # EM or TS
            raise CpuFault(NM)
        raise ud()
    modrm = ins.mod << 6 | ins.reg << 3 | ins.rm
    run(cpu, ins, ins.row.byte, modrm, Operand(cpu, ins) if ins.mod != 3 else None)


@sem("WAIT")
def wait(cpu, ins):
    if cpu.fpu is None:
        if cpu.cr0 & 0xA == 0xA:        # MP and TS
            raise CpuFault(NM)
        return
    run(cpu, ins, 0x9B, 0, None)
