"""SoftEngine: the pure-Python IA-32 CPU behind the engine interface.

`run()` executes guest instructions (through compiled blocks when enabled,
else the reference interpreter) until something needs the machine:
`Halt` (HLT with IF=0, or with nothing pending), `Shutdown` (triple fault),
`Fault` (an exception whose vector is set in `intercept`, with the guest
state rolled back to the faulting instruction, or after it for the trap-like
INT3/INTO), or `Interrupted` when the instruction budget (`max_instructions`,
default `slice`) is spent so the machine can service device time.
External interrupts are sampled between instructions (between blocks on the
compiled path, which is architecturally equivalent) when EFLAGS.IF=1 and no
interrupt shadow (STI, MOV SS, POP SS) is in effect. With a local APIC
(`attach_apic`) the APIC is that interrupt input; an NMI it latched is taken
at the same boundaries whatever IF says, and blocks further NMIs until IRET;
an INIT or SIPI ends `run()` (Interrupted) for the machine to restart the CPU.
With `pause_yields` set (machine/smp.py, several CPUs) a PAUSE ends `run()`
with `Paused` after it retires, so a spinning CPU gives up its turn; off (one
CPU, the default) PAUSE is the NOP it is architecturally.

In VMX non-root operation (`cpu.vmx` set by cpu/vmx/operation.py) a VM
exit leaves `run()` as a `VmExitSignal`, with EIP at the instruction that
exited (or past it, for the trap-like exits); see cpu/vmx/.
"""
from __future__ import annotations


from ringvisor.cpu.core import CS, IF, NMI, RF, TF, CpuFault, Core, GP
from ringvisor.cpu.isa.decoder import NeedMore, decode
from ringvisor.cpu.semantics.interrupts import EXC, EXT, SOFT, TripleFault, exception, HAS_ERROR_CODE
from ringvisor.cpu.semantics.protection import CHECKED, check
from ringvisor.cpu.semantics.system import cpuid_table
from ringvisor.cpu.vmx.exits import VmExitSignal
from ringvisor.cpu.vmx.nonroot import exception_exit
from ringvisor.cpu.x87 import Fpu
from ringvisor.cpu_state import CpuState, TableRegister
from ringvisor.exits import Fault, Halt, Interrupted, Paused, Shutdown


class SoftEngine(Core):
    name = "soft"

    def __init__(self, memory, ports, mmio, interrupts=None):
        super().__init__(memory, ports, mmio)
        self.interrupts = interrupts
        self.apic = None                # the CPU's local APIC (attach_apic), on the pc machine
        self.nmi_blocked = False        # from an NMI's delivery to the next IRET
        self.instructions = 0
        self.intercept = 0              # bit n set: exception vector n exits as Fault
        self.halted = False
        self.shadow = False
        self.cpuid = cpuid_table()
        self.fpu = Fpu()                # the x87 (cpu/x87); None models a CPU without one
        self.fpu_irq = None             # FERR# -> IRQ13 on a PC (the platform wires it)
        self.tsc_offset = 0
        self.slice = 200_000
        self.use_blocks = True
        self.last_exception: tuple[int, int | None] | None = None
        self.debug = None               # a cpu.debug.DebugUnit while a debugger is attached
        self.pause_yields = False       # PAUSE ends run() (set through yield_on_pause)
        self.paused = False             # a PAUSE retired and run() must return Paused
        self.pause_count = 0            # PAUSEs that ended run()
        from ringvisor.cpu.compiler.blocks import BlockCache
        self.blocks = BlockCache(self)

    # --- state ---------------------------------------------------------------
    def set_state(self, st: CpuState) -> None:
        self.r = [st.eax, st.ecx, st.edx, st.ebx, st.esp, st.ebp, st.esi, st.edi]
        self.r = [v & 0xFFFFFFFF for v in self.r]
        self.eip = st.eip & 0xFFFFFFFF
        self.flags = (st.eflags | 2) & 0x3F7FD7
        self.segs = [st.es.copy(), st.cs.copy(), st.ss.copy(), st.ds.copy(), st.fs.copy(), st.gs.copy()]
        self.tr, self.ldtr = st.tr.copy(), st.ldt.copy()
        self.gdtr, self.idtr = st.gdt.copy(), st.idt.copy()
        self.cr0, self.cr2, self.cr3, self.cr4, self.efer = st.cr0, st.cr2, st.cr3, st.cr4, st.efer
        self.halted = False
        self.shadow = False
        self.nmi_blocked = False
        self.paused = False
        self.recache_all()
        self.flush_tlb()

    def yield_on_pause(self, on: bool = True) -> None:
        """PAUSE ends run() with Paused (on) or is a NOP (off). Traces end at
        a PAUSE only while on, so the ones compiled before are dropped."""
        if on != self.pause_yields:
            self.pause_yields = on
            self.blocks.clear()

    def attach_apic(self, apic) -> None:
        """Give the CPU its local APIC (devices/lapic.py): it becomes the
        CPU's interrupt input (INTR through the APIC, ExtINT included), and
        RDMSR/WRMSR/CPUID consult it (cpu/semantics/system.py)."""
        self.apic = self.interrupts = apic

    def fpu_error(self) -> None:
        """FERR# with CR0.NE=0: the PC turns it into IRQ13 and the instruction
        waits for IGNNE# (the handler's write to port 0xF0). Without that
        wiring (a bare CPU in the tests) IGNNE# is taken as asserted."""
        if self.fpu_irq is None:
            self.fpu.ignne = True
        else:
            self.fpu_irq()

    def get_state(self) -> CpuState:
        r = self.r
        s = [x.copy() for x in self.segs]
        return CpuState(eax=r[0], ecx=r[1], edx=r[2], ebx=r[3], esp=r[4], ebp=r[5], esi=r[6],
                        edi=r[7], eip=self.eip, eflags=self.flags, es=s[0], cs=s[1], ss=s[2],
                        ds=s[3], fs=s[4], gs=s[5], tr=self.tr.copy(), ldt=self.ldtr.copy(),
                        gdt=TableRegister(self.gdtr.base, self.gdtr.limit),
                        idt=TableRegister(self.idtr.base, self.idtr.limit),
                        cr0=self.cr0, cr2=self.cr2, cr3=self.cr3, cr4=self.cr4, efer=self.efer)

    def tsc(self) -> int:
        return self.instructions + self.tsc_offset

    def close(self) -> None:
        self.blocks.close()

    # --- fetch and decode --------------------------------------------------------
    def fetch_code(self, eip: int, want: int = 16) -> bytes:
        """Up to `want` code bytes at CS:eip, stopping at the CS limit; raises
        #GP(0) if eip itself is outside, #PF for a missing first page."""
        limit = self.shi[CS]
        if eip > limit:
            raise CpuFault(GP, 0)
        avail = min(want, limit - eip + 1)
        lin = (self.sbase[CS] + eip) & 0xFFFFFFFF
        if self.pg:
            first = min(avail, 0x1000 - (lin & 0xFFF))
            p = self.translate(lin, 0, self.user)
        else:
            first, p = avail, lin
        return self._phys_bytes(p, first), avail - first, lin + first

    def _phys_bytes(self, p: int, n: int) -> bytes:
        if p + n <= self.ramsize:
            return self.mm[p:p + n]
        return bytes(self.rd_phys((p + i) & 0xFFFFFFFF, 1) for i in range(n))

    def decode_at(self, eip: int):
        buf, rest, nxt = self.fetch_code(eip)
        try:
            return decode(buf, self.code32)
        except NeedMore:
            if rest <= 0:
                raise CpuFault(GP, 0) from None
            p = self.translate(nxt & 0xFFFFFFFF, 0, self.user) if self.pg else nxt
            return decode(buf + self._phys_bytes(p, rest), self.code32)

    # --- execution -------------------------------------------------------------------
    def step(self) -> None:
        """Execute one instruction (the reference interpreter); CPU
        exceptions propagate as CpuFault with EIP/ESP not yet rolled back."""
        eip = self.cur_eip = self.eip
        self.cur_esp = self.r[4]
        ins = self.decode_at(eip)
        self.eip = (eip + ins.length) & (0xFFFFFFFF if self.code32 else 0xFFFF)
        if ins.ud or ins.row.handler is None:
            raise CpuFault(6)
        if ins.flags & CHECKED:
            check(self, ins)
        ins.row.handler(self, ins)
        self.instructions += 1

    def run(self, max_instructions: int | None = None):
        budget = self.slice if max_instructions is None else max_instructions
        target = self.instructions + budget
        self.dev_epoch += 1                 # memory may have changed since the last run
        intr = self.interrupts
        apic = self.apic
        debug = self.debug
        while True:
            if self.paused:                     # (before the budget: never carried over)
                self.paused = False
                return Paused()
            if self.instructions >= target and not self.halted:
                return Interrupted()
            single = False
            if apic is not None and (apic.init_pending or apic.sipi_vector is not None):
                return Interrupted()        # INIT/SIPI: the machine restarts this CPU
            if self.shadow:
                # The shadowed instruction runs alone when an interrupt (or
                # an interrupt window) waits for the boundary after it.
                self.shadow = False
                single = intr is not None and intr.pending()
            elif apic is not None and apic.nmi_pending and not self.nmi_blocked and self.vmx is None:
                # NMI: regardless of IF; blocked until the handler's IRET.
                apic.take_nmi()
                self.nmi_blocked, self.halted = True, False
                try:
                    exception(self, NMI, None, EXT)
                except TripleFault:
                    return Shutdown()
            elif intr is not None and (self.flags & IF or self.vmx is not None) and intr.pending():
                try:
                    if self.vmx is not None:
                        # An exit (NMI window, interrupt window, external
                        # interrupt: some regardless of IF), or the guest's delivery.
                        self.vmx.interrupt(self)
                    else:
                        self.halted = False
                        exception(self, intr.acknowledge(), None, EXT)
                except TripleFault:
                    return Shutdown()
                if self.instructions >= target:
                    return Interrupted()
            if self.halted:
                return Halt()
            if debug is not None:
                debug.boundary(self)            # a DebugStop leaves run() here
            try:
                if self.flags & TF:
                    # Single-step: a #DB trap after each instruction that began with TF=1.
                    self.step()
                    self.dr[6] |= 0x4000               # DR6.BS
                    raise CpuFault(1, None, trap=True)
                if self.flags & RF:
                    # RF (set by IRET) lasts one instruction: cleared once it
                    # completes (SDM 17.3.1.1), unless it is an IRET that sets
                    # it again. Nothing reads RF while the instruction runs
                    # (PUSHF stores it as 0; a fault's frame forces it to 1).
                    self.flags &= ~RF
                    try:
                        self.step()
                    except CpuFault as e:
                        if not e.trap:
                            self.flags |= RF
                        raise
                elif self.use_blocks and not single:
                    self.blocks.run(target)
                else:
                    self.step()
            except CpuFault as e:
                exit_ = self._fault(e)
                if exit_ is not None:
                    return exit_
            except TripleFault:
                return Shutdown()
            except VmExitSignal as sig:
                # Fault-like exits: the guest resumes at the instruction (27.1).
                sig.length = (self.eip - self.cur_eip) & 0xFFFFFFFF
                if sig.rip is not None:
                    self.eip = sig.rip
                elif not sig.trap_like:
                    self.eip = self.cur_eip
                    self.r[4] = self.cur_esp
                self.shadow = False
                raise

    def _fault(self, e: CpuFault):
        if not e.trap:
            self.eip = self.cur_eip
            self.r[4] = self.cur_esp
        self.shadow = False
        self.last_exception = (e.vector, e.code)
        vmx = self.vmx
        if vmx is not None and vmx.exception_exits(e.vector, e.code):
            raise self._exception_exit(e)
        if self.intercept >> e.vector & 1:
            code = e.code if e.vector in HAS_ERROR_CODE and self.pe else None
            return Fault(e.vector, code, self.cr2)
        try:
            if vmx is not None:
                vmx.vectoring = vectoring_info(self, e)
            exception(self, e.vector, e.code, SOFT if e.soft else EXC)
        except CpuFault as second:             # delivery of INT3/INTO faulted
            return self._fault(second)
        except TripleFault:
            return Shutdown()
        except VmExitSignal as sig:            # an exit (EPT, #PF) while delivering the event
            sig.vectoring = sig.vectoring or vmx.vectoring
            sig.rip, sig.trap_like = self.eip, True
            raise
        finally:
            if vmx is not None:
                vmx.vectoring = None
        return None

    def _exception_exit(self, e: CpuFault) -> VmExitSignal:
        sig = exception_exit(self, e)
        self.eip = sig.rip
        return sig

    def interrupt(self, vector: int) -> None:
        """Deliver an external interrupt now (for monitors and tests)."""
        exception(self, vector, None, EXT)


def vectoring_info(cpu, e: CpuFault) -> tuple[int, int]:
    """(interruption information, error code) of a CPU exception, in the
    format of the VM-exit and IDT-vectoring fields (SDM 24.9.2-24.9.3)."""
    has_code = e.vector in HAS_ERROR_CODE and cpu.pe and e.code is not None
    kind = 6 if e.soft else 3               # software exception (INT3/INTO) or hardware
    return (1 << 31 | has_code << 11 | kind << 8 | e.vector), (e.code or 0) if has_code else 0
