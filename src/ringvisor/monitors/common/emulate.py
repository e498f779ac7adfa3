"""Emulation of the instructions that fault because the guest kernel is
deprivileged: the privileged ones (PRIV in the opcode table: HLT, LGDT,
MOV CRn, INVLPG, ...), the IOPL-sensitive ones (CLI, STI, IN, OUT, INS,
OUTS), INT n (the real IDT's gates are all DPL 0, so every INT n faults and
is delivered through the guest's IDT with the guest's DPL check), far
returns to the guest's ring 0 or to user mode (IRET, RETF), and stack
segment loads (SS must have RPL = CPL, and the real CPL is not the guest's).

Each handler works on the real guest state (a CpuState) and the virtual
CPU, and returns what the monitor does next. A handler that finds the
guest would fault natively too raises VirtualFault; REFLECT means "not a
deprivileging artefact": the original fault goes to the guest unchanged.
"""
from __future__ import annotations

from ringvisor.cpu.isa.decoder import decode
from ringvisor.cpu.semantics import protection, vme
from ringvisor.cpu.semantics.system import MICROCODE_REVISION, MSR_BIOS_SIGN_ID, MSR_PLATFORM_ID, PLATFORM_ID
from ringvisor.cpu_state import Segment, TableRegister
from ringvisor.devices.lapic_interface import guest_read_msr, guest_write_msr
from ringvisor.monitors.common import delivery, fast_syscall
from ringvisor.monitors.common.delivery import SOFT, Unsupported, far_return, guest_descriptor
from ringvisor.monitors.common.guest_mmu import GP, VirtualFault
from ringvisor.monitors.common.operands import effective, linear, read_memory, read_rm16, reg, set_reg
from ringvisor.monitors.common.outcomes import HALT, JUMPED, NEXT, REFLECT, SHADOW
from ringvisor.monitors.common.vcpu import CR0_ET, CR0_PE, CR0_PG, CR0_TS, CR4_PGE, CR4_PSE, VM

UD = 6
# The CR4 bits the guest's CPU has (VME PVI TSD DE PSE PGE). VME and PVI are the guest's
# only: v86_emulate.py and cli/sti below do their rules against the virtual CPU (the real
# CR4 stays 0).
CR4_VALID = protection.CR4_VALID
MSR_TSC, SYSENTER_MSRS = 0x10, (0x174, 0x175, 0x176)


def fetch_decode(mon, st):
    """The guest instruction at CS:EIP (decoded by the soft CPU's table decoder)."""
    lin = (st.cs.base + st.eip) & 0xFFFFFFFF
    code = mon.gmmu.fetch(lin, user=mon.vcpu.cpl == 3)
    return decode(code, bool(st.cs.db))


# --- interrupt flag and halt -------------------------------------------------------------
def _iopl_ok(mon) -> bool:
    return mon.vcpu.cpl <= mon.vcpu.iopl


def _pvi(mon, st) -> bool:
    """CLI/STI above IOPL act on VIF: at CPL 3 with the guest's CR4.PVI."""
    return vme.cli_sti_virtual(st.eflags & ~VM, mon.vcpu.cr4, mon.vcpu.cpl)


def cli(mon, st, ins):
    if not _iopl_ok(mon):
        if not _pvi(mon, st):
            return REFLECT
        st.eflags = vme.cli_virtual(st.eflags)   # VIF is kept in the real EFLAGS, unused there
        return NEXT
    mon.vcpu.if_ = False
    mon.note_if_cleared("CLI", st)
    return NEXT


def sti(mon, st, ins):
    if not _iopl_ok(mon):
        new = vme.sti_virtual(st.eflags) if _pvi(mon, st) else None
        if new is None:
            return REFLECT                      # #GP(0), as the guest's CPU gives
        st.eflags = new
        return NEXT
    was = mon.vcpu.if_
    mon.vcpu.if_ = True
    return NEXT if was else SHADOW          # STI's one-instruction interrupt shadow


def hlt(mon, st, ins):
    if not mon.vcpu.if_:
        st.eip = (st.eip + ins.length) & 0xFFFFFFFF
        mon.crash("the guest halted with interrupts disabled (cli; hlt): nothing can wake it", st)
    return HALT


# --- port I/O ------------------------------------------------------------------------------
def _io_allowed(mon, port: int, size: int) -> bool:
    """Virtual CPL <= virtual IOPL, or the guest TSS's I/O permission bitmap."""
    v = mon.vcpu
    return v.cpl <= v.iopl or io_bitmap_allows(mon, port, size)


def io_bitmap_allows(mon, port: int, size: int) -> bool:
    """The guest TSS's I/O permission bitmap grants these ports (SDM 19.5.2)."""
    tr = mon.vcpu.tr
    if tr.type not in (9, 11) or tr.limit < 103:
        return False
    base = mon.gmmu.read_u(tr.base + 102, 2)
    at = base + (port >> 3)
    if at + 1 > tr.limit:
        return False
    bits = mon.gmmu.read_u(tr.base + at, 2)
    return not bits & (((1 << size) - 1) << (port & 7))


def _port_and_size(ins, st) -> tuple[int, int]:
    ops = ins.row.operands
    mn = ins.row.mnemonic
    if mn in ("IN", "OUT"):
        port_op, data_op = (ops[1], ops[0]) if mn == "IN" else (ops[0], ops[1])
        port = ins.imm & 0xFF if port_op.kind == "I" else st.edx & 0xFFFF
        return port, 1 if data_op.size == "b" else ins.osz
    return st.edx & 0xFFFF, 1 if mn.endswith("B") else ins.osz


def port_io(mon, st, ins):
    port, size = _port_and_size(ins, st)
    if not _io_allowed(mon, port, size):
        return REFLECT
    return do_io(mon, st, ins, port, size)


def do_io(mon, st, ins, port: int, size: int):
    mn = ins.row.mnemonic
    if mn == "IN":
        set_reg(st, 0, size, mon.ports.read(port, size))
    elif mn == "OUT":
        mon.ports.write(port, size, reg(st, 0, size))
    else:
        _string_io(mon, st, ins, port, size, mn.startswith("IN"))
    return NEXT


def _string_io(mon, st, ins, port: int, size: int, into_memory: bool) -> None:
    amask = 0xFFFF if ins.asz == 2 else 0xFFFFFFFF
    step = -size if st.eflags & 0x400 else size
    count = (st.ecx & amask) if ins.rep else 1
    user = mon.vcpu.cpl == 3
    for _ in range(count):
        if into_memory:
            lin = linear(st, 0, st.edi & amask, size)                       # ES:EDI
            mon.gmmu.write_u(lin, size, mon.ports.read(port, size), user)
            st.edi = (st.edi & ~amask) | ((st.edi + step) & amask)
        else:
            seg = ins.seg if ins.seg >= 0 else 3                            # DS:ESI
            lin = linear(st, seg, st.esi & amask, size)
            mon.ports.write(port, size, mon.gmmu.read_u(lin, size, user))
            st.esi = (st.esi & ~amask) | ((st.esi + step) & amask)
        if ins.rep:
            st.ecx = (st.ecx & ~amask) | ((st.ecx - 1) & amask)


# --- descriptor-table registers -----------------------------------------------------------------
def _pseudo_descriptor(mon, ins, st) -> TableRegister:
    if not ins.mem:
        raise VirtualFault(UD, None)
    limit = read_memory(mon, ins, st, 2)
    base = read_memory(mon, ins, st, 4, disp=2)
    return TableRegister(base if ins.osz == 4 else base & 0xFFFFFF, limit)


def lgdt(mon, st, ins):
    mon.load_gdt(_pseudo_descriptor(mon, ins, st))
    return NEXT


def lidt(mon, st, ins):
    mon.vcpu.idtr = _pseudo_descriptor(mon, ins, st)
    return NEXT


def lldt(mon, st, ins):
    sel = read_rm16(mon, ins, st)
    if sel & 0xFFFC:
        raise Unsupported(f"LLDT {sel:#06x}: the trap monitor does not shadow local descriptor tables")
    mon.vcpu.ldtr = Segment(selector=sel, base=0, limit=0, type=0, present=False, unusable=True)
    return NEXT


def ltr(mon, st, ins):
    sel = read_rm16(mon, ins, st)
    if (sel & 0xFFFC) == 0 or sel & 4:
        raise VirtualFault(GP, sel & 0xFFFC)
    d = guest_descriptor(mon, sel)
    if d.s or d.type not in (1, 9):
        raise VirtualFault(GP, sel & 0xFFFC)
    if not d.present:
        raise VirtualFault(delivery.NP, sel & 0xFFFC)
    mon.gmmu.write_u(d.addr + 4, 4, d.hi | 0x200)               # busy, in the guest's GDT
    mon.vcpu.tr = Segment(selector=sel, base=d.base, limit=d.limit, type=d.type | 2, s=False)
    return NEXT


# --- control and debug registers, MSRs --------------------------------------------------------------
def mov_cr(mon, st, ins):
    v = mon.vcpu
    n = ins.reg
    if n not in (0, 2, 3, 4):
        raise VirtualFault(UD, None)
    if ins.row.opcode == "0F 20":                               # read
        set_reg(st, ins.rm, 4, {0: v.cr0, 2: v.cr2, 3: v.cr3, 4: v.cr4}[n])
        return NEXT
    value = reg(st, ins.rm, 4)
    if n == 0:
        mon.write_cr0(value)
    elif n == 2:
        v.cr2 = value
    elif n == 3:
        v.cr3 = value & 0xFFFFF018
        mon.stats["cr3_writes"] += 1                          # the resume reloads the real CR3
    else:
        if value & ~CR4_VALID:
            raise VirtualFault(GP, 0)
        old, v.cr4 = v.cr4, value
        if (old ^ value) & (CR4_PSE | CR4_PGE):
            mon.shadow_reset()
    return NEXT


def lmsw(mon, st, ins):
    low = read_rm16(mon, ins, st) & 0xF
    mon.write_cr0((mon.vcpu.cr0 & ~0xF) | low | (mon.vcpu.cr0 & CR0_PE))
    return NEXT


def clts(mon, st, ins):
    mon.vcpu.cr0 &= ~CR0_TS
    return NEXT


def mov_dr(mon, st, ins):
    # Debug registers are virtual only: breakpoints are not armed on the real CPU.
    n = ins.reg
    if n in (4, 5):
        n += 2
    if ins.row.opcode == "0F 21":
        set_reg(st, ins.rm, 4, mon.vcpu.dr[n])
    else:
        mon.vcpu.dr[n] = reg(st, ins.rm, 4)
    return NEXT


def invlpg(mon, st, ins):
    if not ins.mem:
        raise VirtualFault(UD, None)
    seg, off = effective(ins, st)
    mon.invlpg((getattr(st, ("es", "cs", "ss", "ds", "fs", "gs")[seg]).base + off) & 0xFFFFFFFF)
    return NEXT


def cache_control(mon, st, ins):
    return NEXT                                                 # INVD/WBINVD: no caches to manage


def rdmsr(mon, st, ins):
    n = st.ecx
    if n == MSR_TSC:
        value = mon.real.tsc()
    elif n in SYSENTER_MSRS:
        value = mon.vcpu.msr.get(n, 0)
    elif n == MSR_BIOS_SIGN_ID:
        value = MICROCODE_REVISION << 32                        # the soft CPU's: no update loaded
    elif n == MSR_PLATFORM_ID:
        value = PLATFORM_ID << 50
    else:
        value = _apic_msr(mon, n, None)
        if value is None:
            raise VirtualFault(GP, 0)
    st.eax, st.edx = value & 0xFFFFFFFF, (value >> 32) & 0xFFFFFFFF
    return NEXT


def wrmsr(mon, st, ins):
    n, value = st.ecx, (st.edx << 32) | st.eax
    if n == MSR_TSC:
        mon.real.set_tsc(value)
    elif n in SYSENTER_MSRS:
        # Kept virtual: the real SYSENTER_CS stays 0, so SYSENTER faults to the monitor.
        mon.vcpu.msr[n] = value & 0xFFFFFFFF
    elif n != MSR_BIOS_SIGN_ID and not _apic_msr(mon, n, value):
        raise VirtualFault(GP, 0)
    return NEXT


def _apic_msr(mon, index: int, value: int | None):
    """The vCPU's local APIC's MSRs (IA32_APIC_BASE, IA32_TSC_DEADLINE, the
    x2APIC registers if it has them), against the machine's LAPIC itself:
    RDMSR (value None) gives the value or None, WRMSR True if the APIC took
    it; None/False is the guest's #GP(0)."""
    apic = getattr(mon, "lapic", None)
    if apic is None:
        return None
    return guest_read_msr(apic, index) if value is None else guest_write_msr(apic, index, value)


# --- control transfers ---------------------------------------------------------------------------
def software_interrupt(mon, st, ins):
    mn = ins.row.mnemonic
    if mn == "INTO" and not st.eflags & 0x800:
        return NEXT
    vector = {"INT": ins.imm & 0xFF, "INT3": 3, "INTO": 4}[mn]
    delivery.raise_event(mon, st, vector, None, SOFT, (st.eip + ins.length) & 0xFFFFFFFF)
    mon.count_reflected(vector, "software")
    return JUMPED


def iret(mon, st, ins):
    far_return(mon, st, ins.osz, iret=True)
    return JUMPED


def retf(mon, st, ins):
    far_return(mon, st, ins.osz, iret=False, release=ins.imm if ins.row.operands else 0)
    return JUMPED


def load_ss(mon, st, ins):
    """MOV SS / POP SS / LSS: the guest's SS selector has RPL = its virtual
    CPL, which is not the real CPL; load the real SS as the guest means it."""
    mn = ins.row.mnemonic
    if mn == "MOV":
        if ins.reg != 2:
            return REFLECT
        sel, offset = read_rm16(mon, ins, st), None
    elif mn == "POP":                  # from the current stack, at its width (SDM: POP)
        stack32 = st.ss.db
        sp = st.esp if stack32 else st.esp & 0xFFFF
        sel = mon.gmmu.read_u((st.ss.base + sp) & 0xFFFFFFFF, 2, user=mon.vcpu.cpl == 3)
        offset = None
    else:                                                       # LSS Gv,Mp
        offset = read_memory(mon, ins, st, ins.osz)
        sel = read_memory(mon, ins, st, 2, disp=ins.osz)
    v = mon.vcpu
    if (sel & 0xFFFC) == 0:
        raise VirtualFault(GP, 0)
    d = guest_descriptor(mon, sel)
    if (sel & 3) != v.cpl or not d.writable or d.dpl != v.cpl:
        raise VirtualFault(GP, sel & 0xFFFC)
    if not d.present:
        raise VirtualFault(delivery.SS_FAULT, sel & 0xFFFC)
    mon.load_stack(st, sel, v.cpl)
    if mn == "POP":
        st.esp = (st.esp + ins.osz) & 0xFFFFFFFF if stack32 else \
            (st.esp & 0xFFFF0000) | ((st.esp + ins.osz) & 0xFFFF)
    if offset is not None:
        set_reg(st, ins.reg, ins.osz, offset)
    return SHADOW                                               # MOV SS's interrupt shadow


def far_transfer(mon, st, ins):
    """A far JMP/CALL that faulted. Through a TSS or a gate in the guest's
    GDT it is a task switch or a call gate, which this monitor does not
    emulate: said plainly instead of reflecting a #GP the guest's CPU would
    not raise. Anything else is the guest's own fault."""
    if ins.row.opcode in ("EA", "9A"):
        sel = ins.imm2 & 0xFFFF
    elif ins.mem:
        sel = read_memory(mon, ins, st, 2, disp=ins.osz)
    else:
        return REFLECT
    if (sel & 0xFFFC) == 0 or sel & 4:
        return REFLECT
    try:
        d = guest_descriptor(mon, sel)
    except VirtualFault:
        return REFLECT
    if not d.s:
        raise Unsupported(f"far {ins.row.mnemonic} through system descriptor {sel:#06x} (a gate or "
                          "task): the trap monitor does not emulate call gates or task switches")
    return REFLECT


# mnemonic -> (handler, virtual CPL 0 only)
HANDLERS = {
    "CLI": (cli, False), "STI": (sti, False), "HLT": (hlt, True),
    "IN": (port_io, False), "OUT": (port_io, False), "INSB": (port_io, False),
    "INS": (port_io, False), "OUTSB": (port_io, False), "OUTS": (port_io, False),
    "LGDT": (lgdt, True), "LIDT": (lidt, True), "LLDT": (lldt, True), "LTR": (ltr, True),
    "LMSW": (lmsw, True), "CLTS": (clts, True), "INVLPG": (invlpg, True),
    "INVD": (cache_control, True), "WBINVD": (cache_control, True),
    "RDMSR": (rdmsr, True), "WRMSR": (wrmsr, True),
    "INT": (software_interrupt, False), "INT3": (software_interrupt, False),
    "INTO": (software_interrupt, False),
    "IRET": (iret, True), "RETF": (retf, True), "LSS": (load_ss, True),
    **fast_syscall.HANDLERS,
}
BY_OPCODE = {"0F 20": (mov_cr, True), "0F 22": (mov_cr, True), "0F 21": (mov_dr, True),
             "0F 23": (mov_dr, True), "8E": (load_ss, True), "17": (load_ss, True),
             "EA": (far_transfer, False), "9A": (far_transfer, False)}
FAR_INDIRECT = frozenset({"JMP Mp", "CALL Mp"})


def handler_for(ins):
    if ins.ud or ins.row is None:
        return None
    if ins.row.text in FAR_INDIRECT:
        return far_transfer, False
    return BY_OPCODE.get(ins.row.opcode) or HANDLERS.get(ins.row.mnemonic)


def emulate(mon, st, ins) -> str:
    """Emulate `ins` (which faulted) against the virtual CPU; returns the
    next step for the monitor."""
    entry = handler_for(ins)
    if entry is None:
        return REFLECT
    fn, kernel_only = entry
    if kernel_only and mon.vcpu.cpl != 0:
        return REFLECT
    result = fn(mon, st, ins)
    if result in (NEXT, HALT, SHADOW):
        st.eip = (st.eip + ins.length) & (0xFFFFFFFF if st.cs.db else 0xFFFF)
    return result


def write_cr0_checked(v, value: int) -> int:
    """The CR0 value a MOV to CR0 produces, or VirtualFault for illegal ones."""
    value = (value | CR0_ET) & 0xE005003F
    if value & CR0_PG and not value & CR0_PE:
        raise VirtualFault(GP, 0)
    if not value & CR0_PE:
        raise Unsupported("the guest left protected mode (CR0.PE=0): the trap monitor runs "
                          "protected-mode guests only")
    return value

