"""System instructions that are not protection control (SDM vol. 2):
HLT, CLI/STI, PUSHF/POPF, IN/OUT, CPUID, RDTSC, RDMSR/WRMSR, SYSENTER/
SYSEXIT, UD2, INVD (WAIT and the x87 escapes: fpu.py).

With a local APIC attached (`cpu.apic`, on the pc machine) RDMSR/WRMSR ask it
about the MSRs it owns before raising #GP, and CPUID.1 reports it (the APIC
flag while IA32_APIC_BASE.EN is set, the initial APIC ID in EBX[31:24], the
TSC-deadline timer and x2APIC where the APIC offers them).

This CPU reports a Pentium II class IA-32 with its x87 FPU (family 6, model
5) and the features the soft CPU implements, no more. The TSC counts retired
instructions (one tick per instruction, plus the offset WRMSR(0x10) sets),
so it is deterministic and identical between the interpreter and compiled
blocks.
"""
from __future__ import annotations

from ringvisor.cpu.core import (CR0_EM, CR0_MP, CR0_TS, CR4_VME, CS, IF, NM, RF, SS, VM, CpuFault,
                                gp, ud)
from ringvisor.cpu.semantics import vme
from ringvisor.cpu.semantics.interrupts import popped_flags
from ringvisor.cpu.semantics.registry import sem
from ringvisor.cpu_state import Segment
from ringvisor.devices.apic_defs import ApicMsrFault
from ringvisor.devices.lapic import cpuid1 as apic_cpuid1

VENDOR = b"GenuineIntel"
CPUID_SIGNATURE = 0x00000652       # family 6, model 5, stepping 2 (a Pentium II, Deschutes)
# CPUID.1.EDX, the bits of what is implemented (SDM vol. 2 CPUID, table 3-11):
# no DE/MCE/APIC/MTRR/PAT/MMX/FXSR (not modelled), no PAE, no hypervisor bit.
CPUID_FEATURES = {"FPU": 0, "VME": 1, "PSE": 3, "TSC": 4, "MSR": 5, "CX8": 8, "SEP": 11, "PGE": 13,
                  "CMOV": 15}
CPUID_EDX = sum(1 << bit for bit in CPUID_FEATURES.values())


def cpuid_table() -> dict[int, tuple[int, int, int, int]]:
    b, d, c = (int.from_bytes(VENDOR[i:i + 4], "little") for i in (0, 4, 8))
    return {0: (1, b, c, d), 1: (CPUID_SIGNATURE, 0, 0, CPUID_EDX)}


MSR_TSC, MSR_SYSENTER_CS, MSR_SYSENTER_ESP, MSR_SYSENTER_EIP = 0x10, 0x174, 0x175, 0x176
# IA32_BIOS_SIGN_ID (SDM vol. 4, table 2-3; vol. 3 9.11.7): bits 63:32 give the
# loaded microcode update's revision after CPUID.1, 0 when none is loaded (as
# here). Software writes 0 before the CPUID; the write is accepted and, with
# no update to report, changes nothing (so KVM and QEMU model it too).
MSR_BIOS_SIGN_ID, MICROCODE_REVISION = 0x8B, 0
# IA32_PLATFORM_ID (read-only): bits 52:50 name the platform a microcode
# update must match; Linux's microcode driver reads it on family 6 from
# model 5 on. Platform 0 here.
MSR_PLATFORM_ID, PLATFORM_ID = 0x17, 0


@sem("HLT")
def hlt(cpu, ins):
    cpu.halted = True


@sem("CLI")
def cli(cpu, ins):
    if cpu.pe and cpu.cpl > cpu.iopl:          # VME or PVI (protection.check let it through)
        cpu.flags = vme.cli_virtual(cpu.flags)
        return
    cpu.flags &= ~IF


@sem("STI")
def sti(cpu, ins):
    if cpu.pe and cpu.cpl > cpu.iopl:          # VME or PVI: VIF, #GP(0) while VIP is set
        new = vme.sti_virtual(cpu.flags)
        if new is None:
            raise gp(0)
        cpu.flags = new
        return
    if not cpu.flags & IF:
        cpu.shadow = True
    cpu.flags |= IF


@sem("PUSHF")
def pushf(cpu, ins):
    if cpu.flags & VM and cpu.iopl < 3:
        image = vme.pushf_image(cpu.flags, ins.osz) if cpu.cr4 & CR4_VME else None
        if image is None:
            raise gp(0)
        cpu.push(image, 2)
        return
    cpu.push(cpu.flags & ~(VM | RF) & (0xFFFF if ins.osz == 2 else 0xFFFFFFFF), ins.osz)


@sem("POPF")
def popf(cpu, ins):
    if cpu.flags & VM and cpu.iopl < 3:
        new = None
        if cpu.cr4 & CR4_VME and ins.osz == 2:
            new = vme.popped_virtual(cpu.flags, cpu.rd(SS, cpu.r[4] & 0xFFFF, 2), ins.osz)
        if new is None:
            raise gp(0)
        cpu.pop(2)
        cpu.flags = new
        return
    v = cpu.pop(ins.osz)
    old = cpu.flags
    cpu.flags = popped_flags(cpu, v, ins.osz, False)
    if cpu.flags & IF and not old & IF:
        cpu.shadow = True


def io_port(cpu, ins) -> tuple[int, int]:
    """(port, size) of an I/O instruction."""
    ops = ins.row.operands
    mn = ins.row.mnemonic
    if mn in ("IN", "OUT"):
        pop = ops[1] if mn == "IN" else ops[0]
        dop = ops[0] if mn == "IN" else ops[1]
        port = ins.imm & 0xFF if pop.kind == "I" else cpu.r[2] & 0xFFFF
        return port, 1 if dop.size == "b" else ins.osz
    return cpu.r[2] & 0xFFFF, 1 if mn.endswith("B") else ins.osz


@sem("IN")
def in_(cpu, ins):
    port, size = io_port(cpu, ins)
    ins.s0(cpu, ins, cpu.ports.read(port, size))


@sem("OUT")
def out(cpu, ins):
    port, size = io_port(cpu, ins)
    cpu.ports.write(port, size, ins.g1(cpu, ins))


@sem("CPUID")
def cpuid(cpu, ins):
    r = cpu.r
    leaf = r[0]
    table = cpu.cpuid
    if leaf not in table:
        leaf = max(k for k in table if k < 0x80000000)
    a, b, c, d = table[leaf]
    apic = getattr(cpu, "apic", None)
    if leaf == 1 and apic is not None:
        b, c, d = apic_cpuid1(apic, b, c, d)
    r[0], r[3], r[1], r[2] = a, b, c, d


@sem("RDTSC")
def rdtsc(cpu, ins):
    t = cpu.tsc() & 0xFFFFFFFFFFFFFFFF
    cpu.r[0], cpu.r[2] = t & 0xFFFFFFFF, t >> 32


@sem("RDMSR")
def rdmsr(cpu, ins):
    n = cpu.r[1]
    if n == MSR_TSC:
        v = cpu.tsc()
    elif n in (MSR_SYSENTER_CS, MSR_SYSENTER_ESP, MSR_SYSENTER_EIP):
        v = cpu.msr.get(n, 0)
    elif n == MSR_BIOS_SIGN_ID:
        v = MICROCODE_REVISION << 32
    elif n == MSR_PLATFORM_ID:
        v = PLATFORM_ID << 50
    else:
        v = _apic_msr(cpu, n, None)
        if v is None:
            raise gp(0)
    cpu.r[0], cpu.r[2] = v & 0xFFFFFFFF, (v >> 32) & 0xFFFFFFFF


@sem("WRMSR")
def wrmsr(cpu, ins):
    n = cpu.r[1]
    v = cpu.r[2] << 32 | cpu.r[0]
    if n == MSR_TSC:
        cpu.tsc_offset = v - cpu.instructions
    elif n in (MSR_SYSENTER_CS, MSR_SYSENTER_ESP, MSR_SYSENTER_EIP):
        cpu.msr[n] = v & 0xFFFFFFFF
    elif n != MSR_BIOS_SIGN_ID and not _apic_msr(cpu, n, v):
        raise gp(0)


def _apic_msr(cpu, index: int, value: int | None):
    """The local APIC's MSRs (IA32_APIC_BASE, IA32_TSC_DEADLINE, the x2APIC
    registers): RDMSR (value None) gives the value or None, WRMSR True if
    the APIC took it. None/False, or the APIC's ApicMsrFault, is #GP(0)."""
    apic = getattr(cpu, "apic", None)
    if apic is None:
        return None
    try:
        return apic.read_msr(index) if value is None else apic.write_msr(index, value)
    except ApicMsrFault:
        raise gp(0) from None


def _flat(sel: int, code: bool, dpl: int) -> Segment:
    return Segment(selector=sel, base=0, limit=0xFFFFFFFF, type=11 if code else 3, present=True,
                   dpl=dpl, db=True, s=True, g=True)


@sem("SYSENTER")
def sysenter(cpu, ins):
    cs = cpu.msr.get(MSR_SYSENTER_CS, 0)
    if not cpu.pe or (cs & 0xFFFC) == 0:
        raise gp(0)
    cpu.flags &= ~(VM | IF | RF)
    cpu.set_seg(CS, _flat(cs & 0xFFFC, True, 0))
    cpu.set_seg(SS, _flat((cs & 0xFFFC) + 8, False, 0))
    cpu.set_cpl(0)
    cpu.r[4] = cpu.msr.get(MSR_SYSENTER_ESP, 0)
    cpu.eip = cpu.msr.get(MSR_SYSENTER_EIP, 0)


@sem("SYSEXIT")
def sysexit(cpu, ins):
    cs = cpu.msr.get(MSR_SYSENTER_CS, 0)
    if not cpu.pe or (cs & 0xFFFC) == 0:
        raise gp(0)
    cpu.set_seg(CS, _flat(((cs + 16) & 0xFFFC) | 3, True, 3))
    cpu.set_seg(SS, _flat(((cs + 24) & 0xFFFC) | 3, False, 3))
    cpu.set_cpl(3)
    cpu.r[4] = cpu.r[1]
    cpu.eip = cpu.r[2]


@sem("UD2")
def ud2(cpu, ins):
    raise ud()


@sem("INVD", "WBINVD")
def invd(cpu, ins):
    pass


@sem("VMCALL", "VMLAUNCH", "VMRESUME", "VMXOFF", "VMREAD", "VMWRITE", "VMPTRLD", "VMPTRST")
def vmx_instruction(cpu, ins):
    # Outside VMX non-root operation (where they exit before running) this
    # CPU is not in VMX operation at all: #UD (SDM vol. 3C ch. 30).
    raise ud()
