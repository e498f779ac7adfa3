"""The trap-and-emulate monitor (`--technique trap`, `--ring 1|3`).

The guest kernel runs deprivileged on the real CPU: ring 1 (the 0/1/3
model) or ring 3 (0/3/3, ring compression), on the monitor's GDT, IDT, TSS
and shadow page tables (region.py, real_tables.py, shadow_gdt.py,
shadow_paging.py). Every exception and interrupt enters the monitor through
its IDT (a stub that exits, real_tables.py); the monitor then

* emulates what faulted because of the deprivileging (emulate.py),
* resolves hidden page faults and traced page-table writes (shadow_paging.py,
  stepper.py),
* reflects everything else into the guest's virtual IDT (delivery.py),

and resumes the guest with set_state. To the machine it looks like an
engine: run() returns Halt (guest HLT with virtual IF=1), Interrupted (the
slice is spent), Shutdown (virtual triple fault), and raises GuestCrashed
for guests it cannot run (cli; hlt, interrupts held off for good, ...).
"""
from __future__ import annotations

import time
from collections import Counter

from ringvisor.cpu.isa.decoder import NeedMore
from ringvisor.cpu_state import CpuState, Segment, TableRegister
from ringvisor.errors import GuestCrashed
from ringvisor.exits import Fault, Halt, Interrupted, Shutdown
from ringvisor.machine import report
from ringvisor.machine.trace import trap_event
from ringvisor.monitors.common import cut_limit
from ringvisor.monitors.common import debugview, device_access, v86
from ringvisor.monitors.common import emulate as E, v86_emulate as V86E
from ringvisor.monitors.common import region as R
from ringvisor.monitors.common import real_tables as T
from ringvisor.monitors.common.delivery import (EXC, EXT, HAS_ERROR_CODE, TripleFault, Unsupported,
                                         guest_descriptor, raise_event, vector_name)
from ringvisor.monitors.common.descriptors import decode, raw_of
from ringvisor.monitors.common.guest_mmu import GuestMmu, ReservedAccess, VirtualFault
from ringvisor.monitors.common.realcpu import RealCpu
from ringvisor.monitors.common.gdt_watch import GdtWatch
from ringvisor.monitors.common.shadow_gdt import KERNEL_VIEW, USER_VIEW, ShadowGdt
from ringvisor.monitors.common.shadow_paging import DeviceAccess, PoolExhausted, ShadowMmu
from ringvisor.monitors.common.stepper import Stepper
from ringvisor.monitors.common.vcpu import VM, VirtualCpu
from ringvisor.monitors.trap.cs_reload import CsReloadWatch
from ringvisor.monitors.trap.stats import statistics

MASKED_LIMIT = 5_000_000        # instructions with an interrupt pending, IF=0 and no trap: stuck
SAME_FAULT_LIMIT = 8            # the same fault unresolved this often in a row: a monitor bug


class TrapMonitor:
    name = "trap"
    tc_bytes = 0                        # region bytes a subclass keeps for code (bt: its cache)
    hide_user_code = True               # returns to user mode fault on the kernel GDT view
    far_transfers_trap = False          # bt: every kernel far transfer is a callout

    def __init__(self, machine, engine, ring: int, fast_faults: bool = False):
        self.machine, self.engine, self.ring = machine, engine, ring
        self.memory, self.ports, self.pic = machine.memory, machine.ports, machine.pic
        self.region = R.MonitorRegion(machine.memory, machine.memory.size, self.tc_bytes)
        T.build(self.region)
        self.port = T.TrapPort()
        machine.ports.register(T.TRAP_PORT, 1, self.port, "ringvisor trap stubs")
        self.real = RealCpu(engine, machine.pic, fast_faults)
        self.stats = Counter()
        self.trap_kinds, self.emulated, self.reflected = Counter(), Counter(), Counter()
        self.traps = 0                  # every exit into the monitor (compare reads it)
        self.vcpu = VirtualCpu(ring=ring)
        self.gdt = ShadowGdt(self.region, ring, self.hide_user_code)
        self.gmmu = GuestMmu(machine.memory, self.vcpu, self.region, self._guest_written)
        self.shadow = ShadowMmu(self.region, self.vcpu, self.gmmu, ring, self.stats, trap_mmio=True)
        self.device_accesses = Counter()        # device MMIO traps by device (device_access.py)
        self.lapic = device_access.vcpu_lapic(machine)         # its MSRs: emulate.py
        self.stepper = Stepper(self.region, self.shadow)
        self.gdt_watch = GdtWatch(self.shadow, self.gmmu, self.gdt)
        self.lifted: tuple[str, Segment] | None = None     # a cut segment lifted for one step
        self.stepper.on_descriptor_write = self._descriptors_written
        self.masked_limit = MASKED_LIMIT
        self.last_trap_at = 0
        self.if_cleared_by = "boot"
        self.guest: CpuState | None = None      # the guest's real state while the CPU is in a stub
        self.same_fault = (None, 0)
        self.resumed: tuple[Segment | None, Segment | None] = (None, None)
        self.cs_watch = None if self.far_transfers_trap else CsReloadWatch()
        self.monitor_seconds = 0.0
        self.tracer = None                      # a machine.trace.Trace (ringvisor run --trace)
        self.tss = Segment(selector=T.MONITOR_TSS, base=self.region.linear(R.TSS),
                           limit=T.TSS_LIMIT, type=11, s=False)

    # --- the engine interface ----------------------------------------------------------
    @property
    def instructions(self) -> int:
        return self.real.instructions

    def set_state(self, boot: CpuState) -> None:
        """The loader's state becomes the virtual CPU's; the real CPU starts
        the guest deprivileged."""
        if not boot.protected:
            raise GuestCrashed("the trap monitor runs protected-mode guests; this one starts in real mode")
        self.vcpu = v = VirtualCpu.from_boot(self.ring, boot)
        self.gmmu.vcpu = self.shadow.vcpu = v
        st = boot.copy()
        for name in CpuState.SEGMENTS:
            setattr(st, name, self.deprivileged_cache(getattr(boot, name), name))
        st.eflags = v.real_flags(boot.eflags)
        self._resume(st)

    def get_state(self) -> CpuState:
        return self.guest_state_of(self.guest if self._in_stub() else self.real.get_state())

    def close(self) -> None:
        self.engine.close()

    # --- a debugger's view (ringvisor.gdb) ------------------------------------------------
    debug_eip = staticmethod(debugview.guest_eip)

    def debug_set_registers(self, view: CpuState) -> None:
        """A debugger changed what debugview.WRITABLE lists of the guest's view."""
        st = self._guest_view(self.real.get_state())
        debugview.apply(st, view)
        self._resume(st)

    def _guest_view(self, st: CpuState, count: bool = False) -> CpuState:
        return st

    def run(self):
        """Run the guest until the slice the machine set is spent, or the
        guest halts, shuts down or crashes."""
        target = self.real.instructions + self.engine.slice
        while True:
            budget = target - self.real.instructions
            if budget <= 0:
                return self._slice_end(Interrupted())
            exit = self.real.run(budget)
            cls = exit.__class__
            if cls is Halt and self.port.pending:
                self.port.pending = False
                trap = self._trap_from_stub()
            elif cls is Fault:
                trap = self._trap_from_fault(exit)
            elif cls is Interrupted:
                return self._slice_end(exit)
            elif cls is Shutdown:
                self.crash("the real CPU shut down (triple fault) while running the guest: the "
                           "monitor's own tables failed", self.real.get_state())
            else:
                self.crash(f"unexpected {cls.__name__} exit from the {self.engine.name} engine",
                           self.real.get_state())
            tracer = self.tracer
            if tracer is not None:
                self._trace_begin(tracer, *trap)
            started = time.perf_counter()
            try:
                result = self._dispatch(*trap)
            finally:
                self.monitor_seconds += time.perf_counter() - started
                if tracer is not None:
                    tracer.trap_end(self.trace_counters())
            if result is not None:
                return result

    # --- ringvisor run --trace -------------------------------------------------------------------
    def _trace_begin(self, tracer, st: CpuState, vector: int, code, external: bool) -> None:
        if vector == 1 and not external and self.stepper.active:
            event = "#DB (monitor step)"
        else:
            event = trap_event(vector_name(vector), vector, code, external, st.cr2)
        tracer.trap_begin(self, event, st.cs.selector & 3, self.guest_state_of(st), self.memory,
                          self.trace_counters(), at_instruction=not external)

    def guest_state_of(self, st: CpuState) -> CpuState:
        """The guest's view of a real state (its CS:EIP, its paging): for
        get_state, reports and --trace."""
        return self.vcpu.view(st)

    def trace_counters(self) -> dict:
        """What the monitor counts, by group, for the trace to diff."""
        return {"emulated": self.emulated, "reflected": self.reflected, "": self.stats}

    # --- taking a trap ---------------------------------------------------------------------
    def _in_stub(self) -> bool:
        return self.guest is not None

    def _trap_from_stub(self):
        real = self.real.get_state()
        vector = T.stub_vector(self.region, real.eip)
        if vector is None or real.cs.selector != T.MONITOR_CODE:
            self.crash("the real CPU halted outside the monitor's trap stubs", real)
        external = self.real.tap.take(vector) if self.real.tap else False
        sp = self.region.physical(R.STACK) + (real.esp - self.region.linear(R.STACK))
        words = [self.region.read_u32(sp + 4 * i) for i in range(6)]
        code = None
        if vector in HAS_ERROR_CODE and not external:
            code, words = words[0], words[1:]
        st = real.copy()
        st.eip, cs, st.eflags, st.esp, ss = words[0], words[1] & 0xFFFF, words[2], words[3], \
            words[4] & 0xFFFF
        if st.eflags & VM:                    # from virtual-8086 mode: ES, DS, FS, GS above SS
            v86.frame_segments(st, cs, ss, self.region, sp + 4 * (6 if code is not None else 5))
            self.guest = st
            return st, vector, code, external
        if cs & 3 == 0:
            self.crash(f"trap {vector_name(vector)} taken inside the monitor", real)
        resumed_cs = self.resumed[0]
        if self.cs_watch is not None and self.cs_watch.reloaded(cs, st.eip):
            resumed_cs = None                 # a stepped far transfer read the table
        st.cs, st.ss = self._real_cache(cs, resumed_cs), self._real_cache(ss, self.resumed[1])
        self.guest = st
        return st, vector, code, external

    def _trap_from_fault(self, exit: Fault):
        st = self.real.get_state()
        self.guest = st
        return st, exit.vector, exit.error_code, False

    def _real_cache(self, selector: int, resumed: Segment | None) -> Segment:
        """The hidden part of the guest's CS or SS at the trap: what the
        monitor loaded, unless the guest has since loaded another selector
        (then the CPU read the real GDT)."""
        if resumed is not None and resumed.selector == selector:
            return resumed.copy()
        view = USER_VIEW if self.vcpu.cpl == 3 else KERNEL_VIEW
        return self.gdt.descriptor(view, selector).segment(selector)

    # --- dispatch ----------------------------------------------------------------------------
    def _dispatch(self, st: CpuState, vector: int, code, external: bool):
        self.traps += 1
        self.last_trap_at = self.real.instructions
        if external or vector != 14:
            self.same_fault = (None, 0)       # progress: the next #PF starts a new count
        if self.stepper.active and (external or vector != 14):
            self._end_step(st)
            if vector == 1 and not external:
                self.trap_kinds["#DB (monitor single-step)"] += 1
                return self._resume(st)
        self.trap_kinds[self._trap_kind(vector, external)] += 1
        try:
            try:
                if external:
                    return self._external(st, vector)
                if vector == 14:
                    return self._page_fault(st, code)
                if vector in (13, 11):
                    return self._emulate(st, vector, code)
                return self._reflect(st, vector, code)
            except VirtualFault as f:         # the guest's own CPU would fault here
                return self._reflect(st, f.vector, f.code, cr2=f.cr2)
        except TripleFault as tf:
            return self._triple_fault(st, str(tf))
        except Unsupported as u:
            self.crash(f"unsupported guest behaviour: {u}", st)
        except ReservedAccess as r:
            self.crash(str(r), st)
        except NeedMore:
            self.crash("the guest's instruction runs into an unmapped page", st)

    def _trap_kind(self, vector: int, external: bool) -> str:
        return "interrupt" if external else vector_name(vector)

    def _external(self, st, vector: int):
        raise_event(self, st, vector, None, EXT, st.eip)
        self.count_reflected(vector, "interrupt")
        return self._resume(st)

    def _emulate(self, st, vector: int, code):
        ins = E.fetch_decode(self, st)
        name = "(undefined)" if ins.row is None else \
            ins.row.mnemonic if ins.row.mnemonic != "MOV" else ins.row.text
        self.emulated[name] += 1              # before: an OUT to the debug-exit port never returns
        result = (V86E if self.vcpu.vm else E).emulate(self, st, ins)
        if result == E.REFLECT:
            self.emulated[name] -= 1
            if not self.emulated[name]:
                del self.emulated[name]
            lift = cut_limit.lifted_cache(self, st, ins) \
                if vector == 13 and code == 0 and not self.vcpu.vm else None
            if lift is not None:
                return self._step_beyond_cut(st, *lift)
            return self._reflect(st, vector, code)
        if result == E.SHADOW and self.pic.pending():
            self.stepper.interrupt_shadow()
        if result == E.HALT and not self.pic.pending():
            self._resume(st)
            return Halt()
        return self._resume(st)

    def _step_beyond_cut(self, st, name: str, lifted: Segment):
        """Run one instruction with segment `name` at the guest's own limit
        (cut_limit.py); `_end_step` puts the cut back."""
        self.lifted = (name, getattr(st, name))
        setattr(st, name, lifted)
        self.stats["cut_limit_steps"] += 1
        self.stepper.single_step()
        return self._resume(st)

    def _end_step(self, st) -> None:
        self.stepper.end(st)
        if self.lifted is not None:
            name, cut = self.lifted
            self.lifted = None
            now = getattr(st, name)
            if now.selector == cut.selector and now.base == cut.base:
                setattr(st, name, cut)

    def _page_fault(self, st, code: int):
        lin = st.cr2
        key = (st.eip, lin, code)
        n = self.same_fault[1] + 1 if self.same_fault[0] == key else 1
        self.same_fault = (key, n)
        if n > SAME_FAULT_LIMIT:
            self.crash(f"the monitor could not resolve a page fault at {lin:#010x} "
                       f"(error code {code:#x}) after {n} tries", st)
        try:
            lift = self.shadow.fill(lin, bool(code & 2), self.vcpu.cpl == 3)
        except PoolExhausted:
            self.shadow_reset()
            return self._resume(st)
        except DeviceAccess as access:
            device_access.trapped(self, st, access)
            return self._resume(st)
        except VirtualFault:
            if self.stepper.active:
                self._end_step(st)
            raise
        if lift is not None:
            pte_addr, frame = lift
            self.stats["pte_write_traps" if self.shadow.traced(frame) else
                       "code_write_steps" if frame in self.shadow.protected else
                       "gdt_write_steps" if frame in self.shadow.descriptor_frames else "wp0_write_steps"] += 1
            self.stepper.lift(pte_addr, frame)
        else:
            self.stats["hidden_faults"] += 1
        return self._resume(st)

    def _reflect(self, st, vector: int, code, cr2: int | None = None):
        if vector == 14:
            self.vcpu.cr2 = st.cr2 if cr2 is None else cr2
        raise_event(self, st, vector, code, EXC, st.eip)
        self.count_reflected(vector, "exception")
        return self._resume(st)

    def _triple_fault(self, st, chain: str):
        self.guest = st
        v = self.vcpu
        return Shutdown(reason=f"virtual triple fault ({chain}) at {st.cs.selector & ~3 | v.cpl:04x}:"
                               f"{st.eip:08x}; guest IDT {v.idtr.base:#010x}/{v.idtr.limit:#06x}, "
                               f"GDT {v.gdtr.base:#010x}/{v.gdtr.limit:#06x}")

    def count_reflected(self, vector: int, kind: str) -> None:
        self.reflected[f"{vector:#04x} {kind}" if kind != "exception" else vector_name(vector)] += 1

    # --- resuming the guest --------------------------------------------------------------------
    def _resume(self, st: CpuState) -> None:
        v = self.vcpu
        st.cr0 = v.real_cr0()
        try:
            st.cr3 = self.shadow.activate()
        except PoolExhausted:
            self.shadow.reset()
            st.cr3 = self.shadow.activate()
        st.cr4 = 0
        view = USER_VIEW if v.cpl == 3 else KERNEL_VIEW
        st.gdt = TableRegister(self.gdt.linear_base(view), 0xFFFF)
        st.idt = TableRegister(self.region.linear(R.IDT), 256 * 8 - 1)
        st.tr = self.tss.copy()
        st.ldt = Segment(selector=0, base=0, limit=0, type=2, s=False, present=False, unusable=True)
        if self.cs_watch is not None and not v.vm and self.cs_watch.before_resume(self, st):
            self.stepper.single_step()
        # The invariants: real IF = virtual IF, real IOPL = 0, real NT = 0.
        st.eflags = self.stepper.real_flags(v.real_flags(st.eflags))
        self.real.set_state(st)
        self.resumed = (st.cs, st.ss)
        self.guest = None
        return None

    def _slice_end(self, exit):
        """The machine's slice is spent: also the watchdog for a guest that
        holds interrupts off for good (the POPF hole: POPF cannot set IF at
        CPL > IOPL and does not trap, so the monitor never hears of it)."""
        if not self.vcpu.if_ and self.pic is not None and self.pic.pending():
            idle = self.real.instructions - self.last_trap_at
            if idle > self.masked_limit:
                self.crash(f"the guest has kept interrupts disabled for {idle:,} instructions without "
                           f"trapping while an interrupt is pending (virtual IF=0 since {self.if_cleared_by}). "
                           + self.masked_reason(), self.real.get_state())
        return exit

    def masked_reason(self) -> str:
        return ("Under trap-and-emulate POPF cannot set IF in a deprivileged kernel and does "
                "not trap, so a guest that re-enables interrupts with POPF waits forever")

    # --- services for the emulator and delivery --------------------------------------------------
    def load_code(self, st: CpuState, selector: int, cpl: int) -> None:
        st.cs = self._load(selector, cpl)
        if self.cs_watch is not None:
            self.cs_watch.cs_loaded_by_monitor()

    def table_cache(self, selector: int) -> Segment:
        """The real cache a load of `selector` (at the guest's ring) gives now."""
        return self._load(selector, self.vcpu.cpl)

    def fetch_decode(self, st: CpuState):
        return E.fetch_decode(self, st)

    def load_stack(self, st: CpuState, selector: int, cpl: int) -> None:
        st.ss = self._load(selector, cpl)

    def _load(self, selector: int, cpl: int) -> Segment:
        """The real cache for a guest selector loaded at virtual CPL `cpl`,
        from the guest's descriptor as the monitor rewrites it."""
        d = guest_descriptor(self, selector)
        view = USER_VIEW if cpl == 3 else KERNEL_VIEW
        real = decode(self.gdt.rewrite(raw_of(d), view))
        return real.segment((selector & ~3) | self.vcpu.real_ring(cpl))

    def deprivileged_cache(self, seg: Segment, name: str, cpl: int | None = None) -> Segment:
        """A segment cache loaded without a GDT read (at boot; by SYSENTER and
        SYSEXIT) made real for virtual CPL `cpl` (default: the current one)."""
        from ringvisor.monitors.common.descriptors import encode_segment
        if seg.unusable:
            return seg.copy()
        cpl = self.vcpu.cpl if cpl is None else cpl
        raw = encode_segment(seg.base, seg.limit, seg.type, seg.dpl, s=seg.s, present=seg.present,
                             db=seg.db)
        real = decode(self.gdt.rewrite(raw, USER_VIEW if cpl == 3 else KERNEL_VIEW))
        sel = seg.selector
        if name in ("cs", "ss"):
            sel = (sel & ~3) | self.vcpu.real_ring(cpl)
        return real.segment(sel)

    def load_gdt(self, gdtr: TableRegister) -> None:
        self.vcpu.gdtr = gdtr
        self.gdt.load(self.gmmu.read(gdtr.base, gdtr.limit + 1, what="the guest's GDT"))
        self.gdt_watch.watch(gdtr.base, gdtr.limit)
        if self.cs_watch is not None:
            self.cs_watch.gdt_loaded()
        self.stats["gdt_loads"] += 1

    def write_cr0(self, value: int) -> None:
        v = self.vcpu
        new = E.write_cr0_checked(v, value)
        old, v.cr0 = v.cr0, new
        if (old ^ new) & E.CR0_PG:
            self.shadow_reset()
            self.gdt_watch.rewatch()

    def shadow_reset(self) -> None:
        self.shadow.reset()

    def invlpg(self, linear: int) -> None:
        self.stats["invlpg"] += 1             # the shadow is kept in sync; the real TLB is flushed on resume

    def note_if_cleared(self, what: str, st: CpuState) -> None:
        self.if_cleared_by = f"{what} at {st.eip:#010x}"

    def _guest_written(self, phys: int, length: int) -> None:
        """The monitor wrote guest memory (a frame, a busy bit): if it is a
        traced page table, mirror it."""
        frame = phys & 0xFFFFF000
        if self.shadow.traced(frame):
            self.shadow.mirror(frame, phys & 0xFFF, (phys & 0xFFF) + length)
        if frame in self.shadow.descriptor_frames:
            self._descriptors_written(frame, phys & 0xFFF, (phys & 0xFFF) + length)

    def _descriptors_written(self, frame: int, lo: int, hi: int) -> None:
        """Bytes of the guest's GDT changed: the real GDT follows, and CS's
        slot may now name another descriptor, as after an LGDT."""
        self.gdt_watch.written(frame, lo, hi)
        if self.cs_watch is not None:
            self.cs_watch.gdt_loaded()

    def crash(self, what: str, st: CpuState):
        view = self.vcpu.view(st)
        translate = report.page_walk(view, self.memory) if self.vcpu.paging else None
        v = self.vcpu
        raise GuestCrashed(
            f"{what}\n{report.describe(view, self.memory, translate)}\n"
            f"  virtual CPU: CPL {v.cpl} (real ring {v.real_ring()}), IF={int(v.if_)}, IOPL={v.iopl}; "
            f"{self.label()}")

    def label(self) -> str:
        return f"trap monitor, --ring {self.ring}"

    # --- statistics -------------------------------------------------------------------------------
    def statistics(self) -> dict:
        return statistics(self)
