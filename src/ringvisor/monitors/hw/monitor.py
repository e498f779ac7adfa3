"""The hw monitor (`--technique hw --engine soft`), written as KVM drives
VT-x: it owns the VMCS, enters the guest with VMLAUNCH/VMRESUME on the
soft CPU (cpu/vmx/operation.py) and handles each VM exit by its basic
reason (handlers.py), then resumes. The guest kernel runs in ring 0 of VMX
non-root operation, unmodified: its sensitive instructions behave as on
bare hardware; only CPUID (the hypervisor bit and leaf 0x40000000) says
where it runs.

Paging: `ept` (default) gives the guest its own page tables and CR3, with
the EPT identity-mapping its RAM (no paging exits); `shadow` is
first-generation VT-x: shadow page tables kept by the monitor (shadow.py).

Interrupts (KVM's inject_pending_event): before every entry, a request of
the guest's virtual interrupt controller (the 8259 pair on the isa machine,
the vCPU's local APIC on the pc machine: vapic.py) is injected through the VM-entry interruption field if
the guest can take it (RFLAGS.IF=1, no STI/MOV SS blocking), else
interrupt-window exiting is set. The VMX-preemption timer ends a run at the
instruction the machine's slice ends at (the PIT's next edge), so timer
interrupts arrive where they do natively.

Several vCPUs (--cpus N): a monitor per vCPU, each with its soft CPU, VMCS
and VPID, sharing the BSP's region, bitmaps and EPT; machine/smp.py runs
them (`smp_cpus`) as it runs native CPUs.
"""
from __future__ import annotations

import time
from collections import Counter

from ringvisor.cpu.vmx import controls as C
from ringvisor.cpu.vmx.capabilities import CR4_VMXE
from ringvisor.cpu.vmx.exits import REASONS
from ringvisor.cpu.vmx.operation import vm_enter
from ringvisor.cpu.vmx.state import read_guest_state, write_guest_state
from ringvisor.cpu.vmx.vmcs import VmxInstructionError
from ringvisor.errors import GuestCrashed
from ringvisor.exits import Halt, Interrupted
from ringvisor.machine import report
from ringvisor.cpu.core import CS
from ringvisor.monitors.common import debugview
from ringvisor.monitors.common import region as R_
from ringvisor.monitors.hw import fpu, handlers, setup, vapic
from ringvisor.monitors.hw.setup import CR0_NE
from ringvisor.monitors.hw.shadow import ShadowPaging


class HwMonitor:
    name = "hw"

    def __init__(self, machine, engine, paging: str = "ept", bsp: "HwMonitor | None" = None):
        """`bsp`: this vCPU is an application processor of that monitor's
        guest (--cpus N): it shares its region, bitmaps and EPT, and has
        its own VMCS, VPID, soft CPU and (under shadow paging) shadow tables."""
        self.machine, self.cpu, self.paging = machine, engine, paging
        self.memory, self.ports = machine.memory, machine.ports
        # The pc machine: the soft CPU's local APIC is the vCPU's virtual
        # APIC, served by the monitor (vapic.py); the CPU in root operation
        # keeps none. The isa machine: the 8259 pair is the guest's.
        self.apic = getattr(engine, "apic", None)
        self.pic = self.apic if self.apic is not None else machine.pic
        engine.apic = None
        # The guest's interrupt controller is virtual: the monitor injects its
        # requests; the CPU's own INTR pin has no host device.
        engine.interrupts = None
        if bsp is None:
            self.region = R_.MonitorRegion(machine.memory, machine.memory.size)
            self.vmcs = setup.build(self.region, self.region.phys, paging, apic=self.apic is not None)
            self.siblings: list[HwMonitor] = [self]   # every vCPU's monitor, the BSP's first
        else:
            self.region = bsp.region
            self.vmcs = setup.sibling(bsp.vmcs, setup.VPID + len(bsp.siblings))
            self.siblings = bsp.siblings
            self.siblings.append(self)
        self.index = self.siblings.index(self)
        self.halted = False                       # HLT exited and no event has woken the vCPU
        self.real_mode = None                     # shadow paging: an AP's start, emulated (realmode.py)
        self.real_mode_instructions = 0
        self.exits = Counter()
        self.pause_count = 0                      # PAUSE exits that ended the vCPU's turn
        self.io_ports = Counter()
        self.mmio_accesses = Counter()            # device page -> emulated accesses
        self.stats_task_switches = Counter()      # by source (SDM table 27-2): emulated
        self.vectoring_consumed = False           # the exit's handler delivered the event itself
        self.injected = 0
        self.nmis_injected = 0
        self.fpu_errors = 0                       # #MF exits of a guest with CR0.NE=0 (fpu.py)
        self.reinjected = 0
        self.hypercalls = Counter()
        self._tracer = bsp._tracer if bsp is not None else None
        self.monitor_seconds = 0.0
        self.shadow = ShadowPaging(self) if paging == "shadow" else None

    @property
    def tracer(self):
        return self._tracer

    @tracer.setter
    def tracer(self, trace) -> None:
        """`--trace`: every vCPU's exits (the machine attaches it to the BSP's monitor)."""
        for mon in self.siblings:
            mon._tracer = trace

    # --- the engine interface ----------------------------------------------------------
    @property
    def instructions(self) -> int:
        return self.cpu.instructions

    # What machine/smp.py asks of a CPU it schedules (the vCPU as the guest sees it).
    @property
    def flags(self) -> int:
        return self.vmcs["GUEST_RFLAGS"]

    @property
    def nmi_blocked(self) -> bool:
        return bool(self.vmcs["GUEST_INTERRUPTIBILITY_INFO"] & C.BLOCKING_BY_NMI)

    @property
    def cpuid(self):
        return self.cpu.cpuid

    @property
    def smp_cpus(self) -> list:
        """The vCPUs machine/smp.py interleaves (this one first)."""
        return self.siblings

    def yield_on_pause(self, on: bool = True) -> None:
        """Several vCPUs (machine/smp.py): PAUSE exiting, so a vCPU spinning
        on a lock gives up its turn (handlers.pause), as KVM uses VT-x's
        pause-loop exiting; one vCPU: PAUSE stays in the guest."""
        if on:
            self.vmcs["CPU_BASED_VM_EXEC_CONTROL"] |= C.CPU_PAUSE_EXITING
        else:
            self.vmcs["CPU_BASED_VM_EXEC_CONTROL"] &= ~C.CPU_PAUSE_EXITING

    def set_state(self, st) -> None:
        self.halted = False
        # A new start (INIT, SIPI) forgets an event the old one had pending.
        self.vmcs["VM_ENTRY_INTR_INFO_FIELD"] = 0
        self.vmcs["CPU_BASED_VM_EXEC_CONTROL"] &= ~(C.CPU_INTERRUPT_WINDOW_EXITING | C.CPU_NMI_WINDOW_EXITING)
        if self.shadow is not None and not st.cr0 & 1:
            # An AP's real-mode start (SIPI) without unrestricted guest.
            from ringvisor.monitors.hw import realmode
            self.real_mode = realmode.RealModeStart(self, st)
            return
        self.real_mode = None
        v = self.vmcs
        self.cr0_shadow = st.cr0
        g = st.copy()
        g.cr0 = st.cr0 | CR0_NE
        g.cr4 = st.cr4 | CR4_VMXE
        write_guest_state(v, g)
        v["CR0_READ_SHADOW"] = st.cr0 & CR0_NE
        fpu.follow_ne(v, st.cr0)
        v["CR4_READ_SHADOW"] = 0
        v["GUEST_ACTIVITY_STATE"] = C.ACTIVE
        v["GUEST_INTERRUPTIBILITY_INFO"] = 0
        if self.shadow is not None:
            self.shadow.set_guest(st)
        r = self.cpu.r
        r[0], r[1], r[2], r[3], r[5], r[6], r[7] = st.eax, st.ecx, st.edx, st.ebx, st.ebp, st.esi, st.edi
        self.cpu.cr2 = st.cr2

    def get_state(self):
        if self.real_mode is not None:
            return self.real_mode.state.copy()
        st = read_guest_state(self.vmcs, self.cpu.r)
        mask = self.vmcs["CR0_GUEST_HOST_MASK"]
        st.cr0 = (st.cr0 & ~mask) | (self.vmcs["CR0_READ_SHADOW"] & mask)
        st.cr4 &= ~self.vmcs["CR4_GUEST_HOST_MASK"]
        st.cr2 = self.cpu.cr2
        return st if self.shadow is None else self.shadow.view(st)

    def close(self) -> None:
        self.cpu.close()

    # --- a debugger's view (ringvisor.gdb) ------------------------------------------------
    def debug_eip(self, cpu) -> int | None:
        """The guest's linear EIP while the CPU is in VMX non-root operation
        (a debugger's stop there saves the guest state into the VMCS)."""
        if cpu.vmx is None:
            return None
        return (cpu.sbase[CS] + cpu.eip) & 0xFFFFFFFF

    def debug_set_registers(self, view) -> None:
        """What debugview.WRITABLE lists, into the VMCS and the CPU's GPRs."""
        st = self.get_state()
        debugview.apply(st, view)
        r, v = self.cpu.r, self.vmcs
        r[0], r[1], r[2], r[3], r[5], r[6], r[7] = st.eax, st.ecx, st.edx, st.ebx, st.ebp, st.esi, st.edi
        v["GUEST_RSP"], v["GUEST_RIP"], v["GUEST_RFLAGS"] = st.esp, st.eip, st.eflags

    def run(self, max_instructions: int | None = None):
        """Enter the guest until the machine's slice ends (the preemption
        timer) or an exit needs the machine (HLT, a triple fault)."""
        cpu, v, apic = self.cpu, self.vmcs, self.apic
        target = cpu.instructions + (cpu.slice if max_instructions is None else max_instructions)
        while True:
            left = target - cpu.instructions
            if left <= 0:
                return Interrupted()
            if apic is not None and (apic.init_pending or apic.sipi_vector is not None):
                return Interrupted()              # INIT/SIPI: the machine restarts this vCPU
            if self.real_mode is not None:
                result = self.real_mode.run(left)
                if result is not None:
                    return result
                continue
            if self.halted:
                if not self._can_wake():
                    return Halt()
                self.halted = False
            v["VMX_PREEMPTION_TIMER_VALUE"] = left
            self._inject_pending_interrupt()
            try:
                exit = vm_enter(cpu, v, launch=not v.launched)
            except VmxInstructionError as e:
                raise GuestCrashed(f"VM entry failed: {e} (a monitor bug)") from None
            reason = exit.basic
            self.exits[reason] += 1
            vectoring = v["IDT_VECTORING_INFO_FIELD"]
            self.vectoring_consumed = False
            started = time.perf_counter()
            try:
                if self.tracer is not None:
                    self._trace(exit)
                result = handlers.HANDLERS.get(reason, handlers.unexpected)(self, exit)
            finally:
                self.monitor_seconds += time.perf_counter() - started
            if vectoring & C.INTR_VALID and not v["VM_ENTRY_INTR_INFO_FIELD"] & C.INTR_VALID \
                    and not self.vectoring_consumed:
                self._reinject(vectoring)
            if result is not None:
                if result.__class__ is Halt:
                    self.halted = True
                return result

    # --- interrupts -------------------------------------------------------------------------
    def _reinject(self, vectoring: int) -> None:
        """An event whose delivery an exit interrupted is delivered again
        at the next entry (SDM 27.2.4; KVM's vmx_complete_interrupts)."""
        v = self.vmcs
        v["VM_ENTRY_INTR_INFO_FIELD"] = vectoring & ~C.INTR_NMI_UNBLOCKING
        v["VM_ENTRY_EXCEPTION_ERROR_CODE"] = v["IDT_VECTORING_ERROR_CODE"]
        v["VM_ENTRY_INSTRUCTION_LEN"] = v["VM_EXIT_INSTRUCTION_LEN"]
        self.reinjected += 1

    def _can_wake(self) -> bool:
        """An event that ends the vCPU's HLT: an NMI, or an interrupt with IF=1."""
        if self.apic is not None and self.apic.nmi_pending:
            return True
        return bool(self.vmcs["GUEST_RFLAGS"] & 0x200) and self.pic.pending()

    def _inject_pending_interrupt(self) -> None:
        v = self.vmcs
        if v["VM_ENTRY_INTR_INFO_FIELD"] & C.INTR_VALID:
            return
        if self.shadow is not None and self.shadow.step is not None:
            return                                # one instruction under the monitor trap flag
        if self.apic is not None and vapic.inject_nmi(self):
            return
        if not self.pic.pending():
            return
        blocked = v["GUEST_INTERRUPTIBILITY_INFO"] & 3
        if v["GUEST_RFLAGS"] & 0x200 and not blocked:
            v["VM_ENTRY_INTR_INFO_FIELD"] = C.intr_info(self.pic.acknowledge(), C.TYPE_EXTERNAL)
            v["GUEST_ACTIVITY_STATE"] = C.ACTIVE
            self.injected += 1
        else:
            v["CPU_BASED_VM_EXEC_CONTROL"] |= C.CPU_INTERRUPT_WINDOW_EXITING

    # --- helpers for the handlers -------------------------------------------------------------
    def skip(self, exit) -> None:
        """The exiting instruction was emulated: the guest resumes after it."""
        v = self.vmcs
        v["GUEST_RIP"] = (v["GUEST_RIP"] + exit.instruction_length) & 0xFFFFFFFF
        v["GUEST_INTERRUPTIBILITY_INFO"] &= ~3

    def inject_exception(self, vector: int, code: int | None = None) -> None:
        self.vmcs["VM_ENTRY_INTR_INFO_FIELD"] = C.intr_info(vector, C.TYPE_HW_EXCEPTION,
                                                            code is not None)
        self.vmcs["VM_ENTRY_EXCEPTION_ERROR_CODE"] = code or 0

    def crash(self, what: str) -> None:
        st = self.get_state()
        translate = report.page_walk(st, self.memory) if st.cr0 & 0x80000000 else None
        raise GuestCrashed(f"{what}\n{report.describe(st, self.memory, translate)}")

    def guest_physical(self, linear: int, write: bool = False) -> int:
        """The guest-physical address of a guest-linear one, through the
        guest's own paging (the guest's crash if it is not its RAM)."""
        linear &= 0xFFFFFFFF
        st = self.get_state()
        translate = report.page_walk(st, self.memory) if st.cr0 & 0x80000000 else None
        p = translate(linear) if translate else linear
        if p is None or p >= self.region.phys:
            self.crash(f"the monitor accessed linear {linear:#010x} for the guest: not mapped "
                       "to guest RAM")
        return p

    def read_linear(self, linear: int, n: int) -> bytes:
        out = bytearray()
        i = 0
        while i < n:
            p = self.guest_physical(linear + i)
            k = min(n - i, 0x1000 - (p & 0xFFF))
            out += self.memory.mmap[p:p + k]
            i += k
        return bytes(out)

    def write_linear(self, linear: int, data: bytes) -> None:
        i = 0
        while i < len(data):
            p = self.guest_physical(linear + i, write=True)
            k = min(len(data) - i, 0x1000 - (p & 0xFFF))
            self.memory.write(p, data[i:i + k])
            if self.shadow is not None:
                self.shadow.guest_wrote(p, k)
            i += k

    # --- ringvisor run --trace / --stats -------------------------------------------------------
    def _trace(self, exit) -> None:
        """One line per exit: where, the guest instruction that exited (for
        the exits an instruction causes), the qualification decoded."""
        st = self.get_state()
        where = f"{st.cs.selector:04x}:{st.eip:08x}"
        if len(self.siblings) > 1:
            where = f"cpu{self.index} {where}"
        insn = ""
        if exit.instruction_length and self.tracer.active:
            translate = report.page_walk(st, self.memory) if st.cr0 & 0x80000000 else None
            text = report.disassemble(report.code_bytes(st, self.memory, translate), st.eip,
                                      32 if st.cs.db else 16)
            insn = text.split("    [")[0]
        self.tracer.write(self.cpu.instructions, f"vmexit {exit.name.lower()}", where, insn,
                          outcome=handlers.describe(self, exit))

    @property
    def traps(self) -> int:
        """VM exits so far (compare's traps_per_iter)."""
        return sum(self.exits.values())

    def exits_by_name(self) -> dict[str, int]:
        return {REASONS.get(r, str(r)).lower(): n for r, n in self.exits.items()}

    def statistics(self) -> dict:
        from ringvisor.monitors.hw.stats import statistics
        return statistics(self)
