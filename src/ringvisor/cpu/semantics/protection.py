"""Protection (SDM vol. 3 ch. 5 and 2.5-2.8).

`check(cpu, ins)` is THE privilege check: every instruction whose table row
carries PRIV, IOPL, PMODE or TSD passes here before its semantics run, and
nowhere else (DESIGN.md). Then the system-table and control-register
instructions: LGDT/LIDT/SGDT/SIDT, LLDT/SLDT, LTR/STR, LMSW/SMSW, CLTS,
MOV to/from CRn/DRn, INVLPG, and the unprivileged checks LAR/LSL/VERR/VERW/
ARPL and MOV from a segment register (which reveal privilege state without
trapping: SENSITIVE in the table).
"""
from __future__ import annotations

from ringvisor.cpu.core import (CF, CR0_CD, CR0_ET, CR0_NW, CR0_PE, CR0_PG, CR0_TS, CR0_WP,
                                CR4_DE, CR4_PGE, CR4_PSE, CR4_PVI, CR4_TSD, CR4_VME, IF, NP, VM, ZF, CpuFault, gp, ud)
from ringvisor.cpu.isa.opcodes import IOPL, PMODE, PRIV, TSD, VMX
from ringvisor.cpu.semantics import vme
from ringvisor.cpu.semantics.registry import register, sem
from ringvisor.cpu.semantics.segments import fetch, null_segment, set_accessed, try_fetch
from ringvisor.cpu_state import TableRegister

CHECKED = PRIV | IOPL | PMODE | TSD | VMX
# VME and PVI: vme.py (CPUID.1:EDX.VME is set).
CR4_VALID = CR4_VME | CR4_PVI | CR4_TSD | CR4_DE | CR4_PSE | CR4_PGE
CR4_VMXE = 0x2000                # set in non-root operation (IA32_VMX_CR4_FIXED0), owned by the monitor


# The policy bits as plain ints: IntFlag's & is a Python-level call, and
# check() runs before every privileged or I/O instruction.
_PMODE, _PRIV, _TSD, _IOPL = int(PMODE), int(PRIV), int(TSD), int(IOPL)


def check(cpu, ins) -> None:
    f = int(ins.flags)
    if f & _PMODE and (not cpu.pe or cpu.flags & VM):
        raise ud()
    if f & _PRIV:
        if cpu.cpl:
            raise gp(0)
    elif f & _TSD:
        if cpu.cr4 & CR4_TSD and cpu.cpl:
            raise gp(0)
    elif f & _IOPL and cpu.pe and (cpu.cpl > cpu.iopl or cpu.flags & VM):
        mn = ins.row.mnemonic
        if mn in ("CLI", "STI"):
            # Above IOPL they #GP, unless VME (v86) or PVI (CPL 3) makes them act on VIF.
            if cpu.cpl > cpu.iopl and not vme.cli_sti_virtual(cpu.flags, cpu.cr4, cpu.cpl):
                raise gp(0)
        elif not _io_allowed(cpu, ins):
            raise gp(0)
    # VMX non-root: the VM-exit decision, after the exceptions that take
    # priority over VM exits (SDM 25.1.1), before the instruction runs.
    if cpu.vmx is not None:
        cpu.vmx.instruction(cpu, ins)


def _io_allowed(cpu, ins) -> bool:
    """IN/OUT/INS/OUTS above IOPL, and always in virtual-8086 mode (SDM
    20.2.8.1: there IOPL does not matter, the bitmap alone decides)."""
    from ringvisor.cpu.semantics.system import io_port
    port, size = io_port(cpu, ins)
    return io_permitted(cpu, port, size)


def io_permitted(cpu, port: int, size: int) -> bool:
    """The TSS I/O permission bitmap (32-bit TSS only)."""
    tr = cpu.tr
    if tr.unusable or tr.type not in (9, 11) or tr.limit < 103:
        return False
    base = cpu.rd_sys(tr.base + 102, 2)
    at = base + (port >> 3)
    if at + 1 > tr.limit:
        return False
    bits = cpu.rd_sys(tr.base + at, 2)
    mask = ((1 << size) - 1) << (port & 7)
    return not bits & mask


# --- descriptor-table registers ---------------------------------------------------
def _read_pseudo(cpu, ins):
    a = ins.eaf(cpu, ins)
    amask = 0xFFFF if ins.asz == 2 else 0xFFFFFFFF
    limit = cpu.rd(ins.seg, a, 2)
    base = cpu.rd(ins.seg, (a + 2) & amask, 4)
    if ins.osz == 2:
        base &= 0xFFFFFF
    return TableRegister(base, limit)


def _write_pseudo(cpu, ins, t):
    a = ins.eaf(cpu, ins)
    amask = 0xFFFF if ins.asz == 2 else 0xFFFFFFFF
    base = t.base if ins.osz == 4 else t.base & 0xFFFFFF
    cpu.check_wr(ins.seg, a, 2)
    cpu.check_wr(ins.seg, (a + 2) & amask, 4)
    cpu.wr(ins.seg, a, 2, t.limit)
    cpu.wr(ins.seg, (a + 2) & amask, 4, base)


@sem("LGDT")
def lgdt(cpu, ins):
    if not ins.mem:
        raise ud()
    cpu.gdtr = _read_pseudo(cpu, ins)


@sem("LIDT")
def lidt(cpu, ins):
    if not ins.mem:
        raise ud()
    cpu.idtr = _read_pseudo(cpu, ins)


@sem("SGDT")
def sgdt(cpu, ins):
    if not ins.mem:
        raise ud()
    _write_pseudo(cpu, ins, cpu.gdtr)


@sem("SIDT")
def sidt(cpu, ins):
    if not ins.mem:
        raise ud()
    _write_pseudo(cpu, ins, cpu.idtr)


def _store_selector(cpu, ins, v):
    """SLDT/STR/SMSW/MOV r/m,Sreg: 16 bits to memory, zero-extended to a
    32-bit register (the SDM leaves the upper half undefined on the Pentium
    and clears it from the P6 on, as AMD does: found against KVM)."""
    if ins.mem:
        cpu.wr(ins.seg, ins.eaf(cpu, ins), 2, v & 0xFFFF)
    elif ins.osz == 4:
        cpu.r[ins.rm] = v & 0xFFFFFFFF
    else:
        cpu.r[ins.rm] = (cpu.r[ins.rm] & 0xFFFF0000) | (v & 0xFFFF)


@sem("SLDT")
def sldt(cpu, ins):
    _store_selector(cpu, ins, cpu.ldtr.selector)


@sem("STR")
def str_(cpu, ins):
    _store_selector(cpu, ins, cpu.tr.selector)


@sem("SMSW")
def smsw(cpu, ins):
    cr0 = cpu.cr0 if cpu.vmx is None else cpu.vmx.cr_read(0, cpu.cr0)
    _store_selector(cpu, ins, cr0 & (0xFFFFFFFF if not ins.mem and ins.osz == 4 else 0xFFFF))


@sem("8C")
def mov_from_sreg(cpu, ins):
    if ins.ud:
        raise ud()
    _store_selector(cpu, ins, cpu.segs[ins.reg].selector)


@sem("LLDT")
def lldt(cpu, ins):
    sel = ins.g0(cpu, ins) & 0xFFFF
    if (sel & 0xFFFC) == 0:
        cpu.ldtr = null_segment(sel)
        return
    if sel & 4:
        raise gp(sel & 0xFFFC)
    d = fetch(cpu, sel)
    if d.s or d.type != 2:
        raise gp(sel & 0xFFFC)
    if not d.present:
        raise CpuFault(NP, sel & 0xFFFC)
    cpu.ldtr = d.segment(sel)


@sem("LTR")
def ltr(cpu, ins):
    sel = ins.g0(cpu, ins) & 0xFFFF
    if (sel & 0xFFFC) == 0 or sel & 4:
        raise gp(sel & 0xFFFC)
    d = fetch(cpu, sel)
    if d.s or d.type not in (1, 9):
        raise gp(sel & 0xFFFC)
    if not d.present:
        raise CpuFault(NP, sel & 0xFFFC)
    d.hi |= 0x200                     # busy
    cpu.wr_sys(d.addr + 4, 4, d.hi)
    cpu.tr = d.segment(sel)


# --- control and debug registers ---------------------------------------------------
def set_cr0(cpu, v: int) -> None:
    v = (v | CR0_ET) & 0xE005003F
    if v & CR0_PG and not v & CR0_PE or v & CR0_NW and not v & CR0_CD:
        raise gp(0)
    old = cpu.cr0
    cpu.cr0 = v
    if (old ^ v) & (CR0_PE | CR0_PG | CR0_WP):
        cpu.recache_all()
        cpu.flush_tlb()


@sem("LMSW")
def lmsw(cpu, ins):
    v = ins.g0(cpu, ins) & 0xF
    v |= cpu.cr0 & CR0_PE           # LMSW cannot clear PE
    v = (cpu.cr0 & ~0xF) | v
    if cpu.vmx is not None:
        v = cpu.vmx.cr_write(0, cpu.cr0, v)
    set_cr0(cpu, v)


@sem("CLTS")
def clts(cpu, ins):
    if cpu.vmx is not None:
        cpu.cr0 = cpu.vmx.cr_write(0, cpu.cr0, cpu.cr0 & ~CR0_TS)
    else:
        cpu.cr0 &= ~CR0_TS


def _mov_cr(cpu, ins):
    to_cr = ins.row.operands[0].kind == "C"
    n = ins.reg
    r = cpu.r
    if n not in (0, 2, 3, 4):
        raise ud()
    vmx = cpu.vmx
    if not to_cr:
        v = {0: cpu.cr0, 2: cpu.cr2, 3: cpu.cr3, 4: cpu.cr4}[n] & 0xFFFFFFFF
        r[ins.rm] = v if vmx is None else vmx.cr_read(n, v)
        return
    v = r[ins.rm]
    if vmx is not None and n in (0, 4):
        # The bits the monitor owns keep their value (their shadow matched, or it exited).
        v = vmx.cr_write(n, cpu.cr4 if n == 4 else cpu.cr0, v)
    if n == 0:
        set_cr0(cpu, v)
    elif n == 2:
        cpu.cr2 = v
    elif n == 3:
        cpu.cr3 = v & 0xFFFFF018
        cpu.flush_tlb(keep_global=True)
    else:
        if v & ~(CR4_VALID | (CR4_VMXE if vmx is not None else 0)):
            raise gp(0)
        old = cpu.cr4
        cpu.cr4 = v
        if (old ^ v) & (CR4_PSE | CR4_PGE):
            cpu.flush_tlb()


def _mov_dr(cpu, ins):
    to_dr = ins.row.operands[0].kind == "D"
    n = ins.reg
    if n in (4, 5):
        if cpu.cr4 & CR4_DE:
            raise ud()
        n += 2
    if to_dr:
        v = cpu.r[ins.rm]
        if n == 6:
            v = (v & 0xE00F) | 0xFFFF0FF0
        elif n == 7:
            v = (v & 0xFFFF2BFF) | 0x400
        cpu.dr[n] = v
    else:
        cpu.r[ins.rm] = cpu.dr[n]


register("0F 20", _mov_cr)
register("0F 22", _mov_cr)
register("0F 21", _mov_dr)
register("0F 23", _mov_dr)


@sem("INVLPG")
def invlpg(cpu, ins):
    if not ins.mem:
        raise ud()
    cpu.invlpg((cpu.sbase[ins.seg] + ins.eaf(cpu, ins)) & 0xFFFFFFFF)


# --- unprivileged protection checks ------------------------------------------------
# LAR/LSL/VERR/VERW as rules on a descriptor (None: null or unreadable
# selector), the selector and the CPL: the CPU applies them to its own
# tables, a monitor to the guest's descriptors at the virtual CPL.
LAR_SYSTEM = {1, 2, 3, 4, 5, 9, 11, 12}
LSL_SYSTEM = {1, 2, 3, 9, 11}


def visible(d, sel: int, cpl: int) -> bool:
    if d.conforming:
        return True
    return d.dpl >= cpl and d.dpl >= (sel & 3)


def lar_value(d, sel: int, cpl: int, osz: int) -> int | None:
    """What LAR loads, or None where it clears ZF and writes nothing."""
    if d is None or (not d.s and d.type not in LAR_SYSTEM) or not visible(d, sel, cpl):
        return None
    return d.hi & (0x00FFFF00 if osz == 4 else 0xFF00)


def lsl_value(d, sel: int, cpl: int, osz: int) -> int | None:
    """What LSL loads (the byte-granular limit), or None where it clears ZF."""
    if d is None or (not d.s and d.type not in LSL_SYSTEM) or not visible(d, sel, cpl):
        return None
    return d.limit & (0xFFFFFFFF if osz == 4 else 0xFFFF)


def verr_ok(d, sel: int, cpl: int) -> bool:
    return d is not None and d.s and d.readable and visible(d, sel, cpl)


def verw_ok(d, sel: int, cpl: int) -> bool:
    return d is not None and d.writable and d.dpl >= cpl and d.dpl >= (sel & 3)


def _set_zf(cpu, ok: bool) -> None:
    cpu.flags = (cpu.flags | ZF) if ok else (cpu.flags & ~ZF)


def _load_descriptor_field(cpu, ins, value_of) -> None:
    """LAR/LSL: ZF=1 and the field loaded when the selector names a
    descriptor the current privilege may see; ZF=0 and nothing written otherwise."""
    sel = ins.g1(cpu, ins) & 0xFFFF
    value = value_of(try_fetch(cpu, sel), sel, cpu.cpl, ins.osz)
    if value is not None:
        ins.s0(cpu, ins, value)
    _set_zf(cpu, value is not None)


@sem("LAR")
def lar(cpu, ins):
    _load_descriptor_field(cpu, ins, lar_value)


@sem("LSL")
def lsl(cpu, ins):
    _load_descriptor_field(cpu, ins, lsl_value)


@sem("VERR")
def verr(cpu, ins):
    sel = ins.g0(cpu, ins) & 0xFFFF
    _set_zf(cpu, verr_ok(try_fetch(cpu, sel), sel, cpu.cpl))


@sem("VERW")
def verw(cpu, ins):
    sel = ins.g0(cpu, ins) & 0xFFFF
    _set_zf(cpu, verw_ok(try_fetch(cpu, sel), sel, cpu.cpl))


@sem("ARPL")
def arpl(cpu, ins):
    dst = ins.g0(cpu, ins)
    src = ins.g1(cpu, ins)
    if (dst & 3) < (src & 3):
        ins.wb0(cpu, ins, (dst & ~3) | (src & 3))
        cpu.flags |= ZF
    else:
        cpu.flags &= ~ZF


_ = (CF, IF, set_accessed, CR0_TS)
