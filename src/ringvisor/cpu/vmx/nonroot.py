"""VMX non-root operation (SDM vol. 3C ch. 25): which instructions and
events cause VM exits, and how the rest behave differently (CR0/CR4 read
shadows, TSC offsetting).

The CPU decides an instruction's exit in ONE place: `protection.check()`,
which every instruction with a policy flag (PRIV, IOPL, TSD, VMX) passes
before its semantics run, calls `NonRoot.instruction()` after the
exceptions that take priority over VM exits (25.1.1: #UD, CPL and IOPL
checks) have been raised. Instructions without such a flag never exit, and
compiled code for them is the same as in root operation.
"""
from __future__ import annotations

from ringvisor.cpu.vmx import controls as C
from ringvisor.cpu.vmx import exits as X
from ringvisor.cpu.vmx.exits import R, VmExitSignal

CR0_TS, CR0_PE = 8, 1


class NonRoot:
    """The controls of the VMCS being run, in the form the CPU reads them."""

    def __init__(self, vmcs, ept=None):
        v = vmcs
        self.vmcs = vmcs
        self.pin = v["PIN_BASED_VM_EXEC_CONTROL"]
        self.proc = proc = v["CPU_BASED_VM_EXEC_CONTROL"]
        self.proc2 = v["SECONDARY_VM_EXEC_CONTROL"] if proc & C.CPU_ACTIVATE_SECONDARY else 0
        self.exit_controls = v["VM_EXIT_CONTROLS"]
        self.exception_bitmap = v["EXCEPTION_BITMAP"]
        self.pfec_mask, self.pfec_match = v["PAGE_FAULT_ERROR_CODE_MASK"], v["PAGE_FAULT_ERROR_CODE_MATCH"]
        self.cr0_mask, self.cr0_shadow = v["CR0_GUEST_HOST_MASK"], v["CR0_READ_SHADOW"]
        self.cr4_mask, self.cr4_shadow = v["CR4_GUEST_HOST_MASK"], v["CR4_READ_SHADOW"]
        self.cr3_targets = [v[f"CR3_TARGET_VALUE{i}"] for i in range(v["CR3_TARGET_COUNT"])]
        self.io_bitmaps = (v["IO_BITMAP_A"], v["IO_BITMAP_B"]) if proc & C.CPU_USE_IO_BITMAPS else None
        self.msr_bitmap = v["MSR_BITMAP"] if proc & C.CPU_USE_MSR_BITMAPS else None
        self.tsc_offset = v["TSC_OFFSET"] if proc & C.CPU_USE_TSC_OFFSETTING else 0
        if self.tsc_offset >= 1 << 63:
            self.tsc_offset -= 1 << 64
        self.ept = ept
        self.vectoring: tuple[int, int] | None = None   # (IDT-vectoring info, error code)
        self.nmi_blocked = bool(v["GUEST_INTERRUPTIBILITY_INFO"] & C.BLOCKING_BY_NMI)
        self.host_pin = None              # the CPU's INTR pin (the engine's interrupts)

    # --- instructions ------------------------------------------------------------------
    def instruction(self, cpu, ins) -> None:
        rule = RULES.get(ins.row.opcode)
        if rule is not None:
            rule(self, cpu, ins)

    def _cpuid(self, cpu, ins):
        raise VmExitSignal(R["CPUID"])

    def _invd(self, cpu, ins):
        raise VmExitSignal(R["INVD"])

    def _wbinvd(self, cpu, ins):
        if self.proc2 & C.SEC_WBINVD_EXITING:
            raise VmExitSignal(R["WBINVD"])

    def _vmcall(self, cpu, ins):
        raise VmExitSignal(R["VMCALL"])

    def _vmx_instruction(self, cpu, ins):
        """The VMX instructions exit unconditionally in non-root operation
        (25.1.2); a memory operand's displacement is the qualification."""
        name = ins.row.mnemonic
        if name == "VMPTRLD" and 0x66 in ins.prefixes:
            name = "VMCLEAR"
        elif name == "VMPTRLD" and 0xF3 in ins.prefixes:
            name = "VMXON"
        q = getattr(ins, "disp", 0) or 0 if ins.mem else 0
        raise VmExitSignal(R[name], q & 0xFFFFFFFF)

    def pause(self, cpu) -> None:
        """PAUSE (F3 90) with PAUSE exiting (SDM 25.1.3): a VM exit, so a VMM
        can deschedule a spinning vCPU; without it PAUSE is a NOP."""
        if self.proc & C.CPU_PAUSE_EXITING:
            raise VmExitSignal(R["PAUSE"])

    def _hlt(self, cpu, ins):
        if self.proc & C.CPU_HLT_EXITING:
            raise VmExitSignal(R["HLT"])

    def _invlpg(self, cpu, ins):
        if self.proc & C.CPU_INVLPG_EXITING:
            raise VmExitSignal(R["INVLPG"], (cpu.sbase[ins.seg] + ins.eaf(cpu, ins)) & 0xFFFFFFFF)

    def _rdtsc(self, cpu, ins):
        if self.proc & C.CPU_RDTSC_EXITING:
            raise VmExitSignal(R["RDTSC"])

    def _msr(self, cpu, ins):
        write = ins.row.mnemonic == "WRMSR"
        if self.msr_exits(cpu.r[1], write):
            raise VmExitSignal(R["MSR_WRITE" if write else "MSR_READ"])

    def msr_exits(self, msr: int, write: bool) -> bool:
        """25.1.3: without MSR bitmaps every RDMSR/WRMSR exits; with them,
        the bit for the MSR (read-low, read-high, write-low, write-high
        quarters of the 4 KiB bitmap), and MSRs outside both ranges exit."""
        if self.msr_bitmap is None:
            return True
        if msr <= 0x1FFF:
            quarter = 0
        elif 0xC0000000 <= msr <= 0xC0001FFF:
            quarter = 1
        else:
            return True
        n = msr & 0x1FFF
        at = self.msr_bitmap + (2 if write else 0) * 1024 + quarter * 1024 + (n >> 3)
        return bool(self._host_byte(at) >> (n & 7) & 1)

    def io_exits(self, port: int, size: int) -> bool:
        """25.1.3: unconditional I/O exiting, or the I/O bitmaps (A: ports
        0-0x7FFF, B: 0x8000-0xFFFF): any byte of the access with its bit
        set exits, as does an access wrapping past port 0xFFFF."""
        if self.io_bitmaps is None:
            return bool(self.proc & C.CPU_UNCONDITIONAL_IO_EXITING)
        if port + size - 1 > 0xFFFF:
            return True
        for p in range(port, port + size):
            bitmap = self.io_bitmaps[p >> 15]
            if self._host_byte(bitmap + ((p & 0x7FFF) >> 3)) >> (p & 7) & 1:
                return True
        return False

    def _io(self, cpu, ins):
        from ringvisor.cpu.semantics.system import io_port
        port, size = io_port(cpu, ins)
        if not self.io_exits(port, size):
            return
        mn = ins.row.mnemonic
        string = mn.startswith(("INS", "OUTS"))
        immediate = mn in ("IN", "OUT") and any(o.kind == "I" for o in ins.row.operands)
        q = X.io_qualification(port, size, mn.startswith("IN"), string, string and ins.rep != 0,
                               immediate)
        gla = info = 0
        if string:
            amask = 0xFFFF if ins.asz == 2 else 0xFFFFFFFF
            seg = 0 if mn.startswith("INS") else ins.seg if ins.seg >= 0 else 3
            gla = cpu.sbase[seg] + (cpu.r[7 if seg == 0 and mn.startswith("INS") else 6] & amask)
            # Instruction information for INS/OUTS (table 27-8): address size
            # in bits 9:7 (0: 16-bit, 1: 32-bit), segment in bits 17:15.
            info = (0 if ins.asz == 2 else 1) << 7 | seg << 15
        sig = VmExitSignal(R["IO_INSTRUCTION"], q, gla=gla & 0xFFFFFFFF)
        sig.instruction_info = info
        raise sig

    def _mov_cr(self, cpu, ins):
        n = ins.reg
        to_cr = ins.row.opcode == "0F 22"
        if to_cr:
            v = cpu.r[ins.rm]
            exits = {0: lambda: (v ^ self.cr0_shadow) & self.cr0_mask,
                     4: lambda: (v ^ self.cr4_shadow) & self.cr4_mask,
                     3: lambda: self.proc & C.CPU_CR3_LOAD_EXITING and v not in self.cr3_targets,
                     }.get(n)
        else:
            exits = (lambda: self.proc & C.CPU_CR3_STORE_EXITING) if n == 3 else None
        if exits is not None and exits():
            raise VmExitSignal(R["CR_ACCESS"], X.cr_qualification(
                n, X.CR_MOV_TO if to_cr else X.CR_MOV_FROM, ins.rm))

    def _clts(self, cpu, ins):
        if self.cr0_mask & CR0_TS and self.cr0_shadow & CR0_TS:
            raise VmExitSignal(R["CR_ACCESS"], X.cr_qualification(0, X.CR_CLTS))

    def _lmsw(self, cpu, ins):
        src = ins.g0(cpu, ins) & 0xFFFF
        low = self.cr0_mask & 0xE
        exits = (src ^ self.cr0_shadow) & low or \
            (self.cr0_mask & CR0_PE and not self.cr0_shadow & CR0_PE and src & CR0_PE)
        if exits:
            raise VmExitSignal(R["CR_ACCESS"], X.cr_qualification(
                0, X.CR_LMSW, lmsw_data=src, lmsw_memory=ins.mem))

    def _mov_dr(self, cpu, ins):
        if self.proc & C.CPU_MOV_DR_EXITING:
            raise VmExitSignal(R["DR_ACCESS"], X.dr_qualification(
                ins.reg, ins.row.opcode == "0F 21", ins.rm))

    # --- what the guest reads and writes instead ------------------------------------------
    def cr_read(self, n: int, value: int) -> int:
        """MOV from CR0/CR4 and SMSW: the read shadow for the bits the monitor owns."""
        if n == 0:
            return (value & ~self.cr0_mask) | (self.cr0_shadow & self.cr0_mask)
        if n == 4:
            return (value & ~self.cr4_mask) | (self.cr4_shadow & self.cr4_mask)
        return value

    def cr_write(self, n: int, old: int, value: int) -> int:
        """MOV to CR0/CR4, LMSW, CLTS without an exit: the owned bits keep their value."""
        mask = self.cr0_mask if n == 0 else self.cr4_mask if n == 4 else 0
        return (old & mask) | (value & ~mask)

    # --- events ---------------------------------------------------------------------------
    def exception_exits(self, vector: int, code: int | None) -> bool:
        """25.2: the exception bitmap; for #PF the bit and the error-code
        mask/match decide together (exit iff bit 14 == (PFEC & mask == match))."""
        bit = self.exception_bitmap >> vector & 1
        if vector == 14:
            return bool(bit) == ((code or 0) & self.pfec_mask == self.pfec_match)
        return bool(bit)

    def nested_exit(self, cpu, fault, vector: int, code, external: bool) -> VmExitSignal:
        """An exception-bitmap exit for `fault`, met while delivering event
        `vector`: the guest resumes where the event was to be delivered."""
        sig = exception_exit(cpu, fault)
        kind = C.TYPE_EXTERNAL if external else C.TYPE_HW_EXCEPTION
        sig.vectoring = (C.intr_info(vector, kind, code is not None), code or 0)
        sig.rip = cpu.eip
        return sig

    def interrupt(self, cpu) -> None:
        """At an instruction boundary without blocking by STI/MOV SS: an
        NMI-window exit (no virtual-NMI blocking), an interrupt-window exit
        (RFLAGS.IF=1), an external-interrupt exit (whatever RFLAGS.IF says,
        25.2), or, without exiting, the guest's own delivery (IF=1)."""
        if self.proc & C.CPU_NMI_WINDOW_EXITING and not self.nmi_blocked:
            raise VmExitSignal(R["NMI_WINDOW"])
        enabled = cpu.flags & 0x200
        if self.proc & C.CPU_INTERRUPT_WINDOW_EXITING and enabled:
            raise VmExitSignal(R["INTERRUPT_WINDOW"])
        pin = self.host_pin
        if pin is None or not pin.pending():
            return
        if self.pin & C.PIN_EXTERNAL_INTERRUPT_EXITING:
            info = 0
            if self.exit_controls & C.EXIT_ACK_INTERRUPT_ON_EXIT:
                info = C.intr_info(pin.acknowledge(), C.TYPE_EXTERNAL)
            raise VmExitSignal(R["EXTERNAL_INTERRUPT"], intr_info=info)
        if enabled:
            from ringvisor.cpu.semantics.interrupts import EXT, exception
            cpu.halted = False
            exception(cpu, pin.acknowledge(), None, EXT)

    def iret(self) -> None:
        """IRET ends virtual-NMI blocking (25.3)."""
        self.nmi_blocked = False

    def _host_byte(self, phys: int) -> int:
        return self.cpu_memory[phys]


def exception_exit(cpu, e) -> VmExitSignal:
    """Exit reason 0 (SDM 27.2.2) for CPU exception `e`: its interruption
    information; for #PF the linear address is the qualification and CR2
    keeps its old value; software exceptions (INT3, INTO) exit at the
    instruction, with its length."""
    has_code = e.vector in (8, 10, 11, 12, 13, 14, 17) and cpu.pe and e.code is not None
    info = C.intr_info(e.vector, C.TYPE_SW_EXCEPTION if e.soft else C.TYPE_HW_EXCEPTION, has_code)
    q = 0
    if e.vector == 14:
        q = cpu.cr2
        cpu.cr2 = getattr(cpu, "cr2_before", cpu.cr2)
    sig = VmExitSignal(R["EXCEPTION_NMI"], q, intr_info=info, intr_error=e.code or 0 if has_code else 0,
                       trap_like=True)
    if e.soft:
        sig.length = (cpu.eip - cpu.cur_eip) & 0xFFFFFFFF
        sig.rip = cpu.cur_eip
    else:
        sig.rip = cpu.eip
    return sig


class WindowPin:
    """The CPU's interrupt pin as the engine loop sees it in non-root
    operation: "pending" when something is due at the next boundary: an
    NMI window without virtual-NMI blocking, an interrupt window with IF=1,
    a request on the real pin (an exit with external-interrupt exiting, a
    delivery with IF=1)."""

    def __init__(self, nonroot: NonRoot, cpu):
        self.nr, self.cpu = nonroot, cpu

    def pending(self) -> bool:
        nr = self.nr
        if nr.proc & C.CPU_NMI_WINDOW_EXITING and not nr.nmi_blocked:
            return True
        enabled = self.cpu.flags & 0x200
        if nr.proc & C.CPU_INTERRUPT_WINDOW_EXITING and enabled:
            return True
        pin = nr.host_pin
        return pin is not None and (enabled or nr.pin & C.PIN_EXTERNAL_INTERRUPT_EXITING) \
            and pin.pending()

    def acknowledge(self) -> int:
        raise AssertionError("non-root interrupts are taken by NonRoot.interrupt")


def window_pin(nonroot: NonRoot, cpu) -> WindowPin | None:
    """What the engine polls between instructions in non-root operation:
    None when nothing can become due during this entry (no NMI- or
    interrupt-window exiting, no interrupt source on the CPU's pin, as
    under the hw monitor, whose PIC is the guest's and injected at entry),
    so compiled code pays no poll at all; the controls cannot change
    before the next exit. Measured: the poll was a quarter of a compute
    run's host time under hw."""
    if nonroot.host_pin is None and not nonroot.proc & (C.CPU_NMI_WINDOW_EXITING |
                                                        C.CPU_INTERRUPT_WINDOW_EXITING):
        return None
    return WindowPin(nonroot, cpu)


RULES = {
    "0F A2": NonRoot._cpuid, "0F 08": NonRoot._invd, "0F 09": NonRoot._wbinvd,
    "0F 01 C1": NonRoot._vmcall, "F4": NonRoot._hlt,
    **{op: NonRoot._vmx_instruction for op in ("0F 01 C2", "0F 01 C3", "0F 01 C4", "0F 78", "0F 79",
                                               "0F C7 /6", "0F C7 /7")}, "0F 01 /7": NonRoot._invlpg,
    "0F 31": NonRoot._rdtsc, "0F 32": NonRoot._msr, "0F 30": NonRoot._msr,
    "0F 20": NonRoot._mov_cr, "0F 22": NonRoot._mov_cr, "0F 21": NonRoot._mov_dr,
    "0F 23": NonRoot._mov_dr, "0F 06": NonRoot._clts, "0F 01 /6": NonRoot._lmsw,
    **{op: NonRoot._io for op in ("E4", "E5", "E6", "E7", "EC", "ED", "EE", "EF",
                                  "6C", "6D", "6E", "6F")},
}
