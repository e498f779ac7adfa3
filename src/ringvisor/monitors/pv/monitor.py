"""The paravirtualization monitor (`--technique pv`): ringvisor's side of
the PV ABI (docs/pv-abi.md) for kernels built for it (ringos-pv).

The guest kernel runs in ring 1 on the monitor's GDT, IDT and TSS
(pv_tables.py) and on its own page tables, which the monitor validates
(pv_mmu.py: direct paging, no shadow tables). Everything that reaches the
monitor comes through its IDT: the stub of the vector writes the trap port
and halts (real_tables.py), and the monitor reads the frame on its stack:

* vector 0x82 from ring 1: a hypercall (pv_hypercalls.py), whose result
  goes back in EAX; pending events are delivered on the way out;
* IRQ 0 (PIC_VECTOR): the guest's timer (pv_timer.py) may have expired;
* any other vector: an exception (or an `int n` the gate allowed) bounced
  to the guest's trap table (pv_events.py).

To the machine it is an engine: run() returns Halt while the guest is
blocked (HC_BLOCK; the CPU waits in the monitor's idle loop), Interrupted
when the slice is spent; HC_SHUTDOWN ends the run like the debug-exit port.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace

from ringvisor.cpu_state import CpuState
from ringvisor.errors import GuestCrashed
from ringvisor.exits import GuestStopped, Halt, Interrupted
from ringvisor.machine import report
from ringvisor.machine.trace import trap_event
from ringvisor.monitors.common import debugview
from ringvisor.monitors.common import real_tables as T
from ringvisor.monitors.common import region as R
from ringvisor.monitors.common.delivery import vector_name
from ringvisor.monitors.common.guest_mmu import GuestMmu, ReservedAccess, VirtualFault
from ringvisor.monitors.common.realcpu import RealCpu
from ringvisor.monitors.common.vcpu import VirtualCpu
from ringvisor.monitors.pv import abi as A
from ringvisor.monitors.pv import image as pv_image
from ringvisor.monitors.pv.events import IF, SharedInfo, Undeliverable, bounce
from ringvisor.monitors.pv.hypercalls import HANDLERS
from ringvisor.monitors.pv.mmu import PAGE, DirectPaging, PvError
from ringvisor.monitors.pv.tables import PvTables
from ringvisor.monitors.pv.timer import PIC_VECTOR, PvTimer

GP, PF = 13, 14


class PvMonitor:
    name = "pv"

    def __init__(self, machine, engine):
        self.machine, self.engine, self.memory = machine, engine, machine.memory
        self.region = R.MonitorRegion(machine.memory, machine.memory.size, linear_base=A.HOLE)
        self.tables = PvTables(self.region)
        self.port = T.TrapPort()
        machine.ports.register(T.TRAP_PORT, 1, self.port, "ringvisor trap stubs")
        self.real = RealCpu(engine, machine.pic)
        self.timer = PvTimer(machine.ports, machine.platform)
        self.console = machine.console
        nr_pages = min(machine.layout.usable_end, A.HOLE) // PAGE
        self.stats = Counter()
        self.paging = DirectPaging(machine.memory.mmap, nr_pages, T.monitor_pde(self.region), self.stats)
        # The context GuestMmu walks with: the guest's directory, ring-1 rights, WP honoured.
        self.vcpu = VirtualCpu(ring=1, cpl=1, cr0=A.GUEST_CR0)
        self.gmmu = GuestMmu(machine.memory, self.vcpu, self.region)
        self.shared: SharedInfo | None = None
        self.trap_table: dict[int, tuple[int, int]] = {}
        self.callback: int | None = None
        self.kernel_stack: int | None = None
        self.guest: CpuState | None = None       # the guest's state while the CPU is in a stub
        self.blocked: CpuState | None = None     # the guest's state while it waits for an event
        self.in_hypercall: str | None = None
        self.traps = 0
        self.hypercalls, self.rejected = Counter(), Counter()
        self.tracer = None                      # a machine.trace.Trace (ringvisor run --trace)
        self.events, self.bounced = Counter(), Counter()
        self.monitor_seconds = 0.0

    # --- the engine interface ----------------------------------------------------------
    @property
    def instructions(self) -> int:
        return self.real.instructions

    def set_state(self, loader_state: CpuState) -> None:
        """The loader's (multiboot) state is not a PV start: build the ABI's
        start of day from the kernel image instead (section 2)."""
        image = pv_image.read_image(self.machine.config.kernel)
        pv_image.load(self.memory, image, self.paging.nr_pages)
        day = pv_image.lay_out(self.memory, self.paging, image, self.machine.config.cmdline,
                               self.timer.tsc_khz)
        self.start = day
        self.shared = SharedInfo(self.memory, day.shared_info)
        self.shared.mask(True)
        self.timer.start()
        self.update_time()
        st = CpuState(eip=image.entry, esp=day.stack_top, eax=A.BOOT_MAGIC, esi=day.start_info,
                      eflags=IF | 2, cs=self.tables.segment(A.KERNEL_CODE),
                      ss=self.tables.segment(A.KERNEL_DATA), ds=self.tables.segment(A.KERNEL_DATA),
                      es=self.tables.segment(A.KERNEL_DATA), fs=self.tables.segment(0),
                      gs=self.tables.segment(0))
        self.vcpu.cr3 = st.cr3 = day.pt_base
        self._resume(st)

    def get_state(self) -> CpuState:
        """The guest's registers (IF shows whether events are unmasked)."""
        st = (self.blocked or self.guest or self.real.get_state()).copy()
        if self.shared is not None:
            st.eflags = (st.eflags & ~IF) | (0 if self.shared.masked else IF)
        return st

    def close(self) -> None:
        self.engine.close()

    # --- a debugger's view (ringvisor.gdb) ------------------------------------------------
    debug_eip = staticmethod(debugview.guest_eip)

    def debug_set_registers(self, view: CpuState) -> None:
        """A debugger changed what debugview.WRITABLE lists of the guest's view."""
        if self.blocked is not None:
            debugview.apply(self.blocked, view)   # the state the guest wakes up with
            return
        st = self.real.get_state()
        debugview.apply(st, view)
        self._resume(st)

    def run(self):
        target = self.real.instructions + self.engine.slice
        while True:
            budget = target - self.real.instructions
            if budget <= 0:
                return Interrupted()
            exit = self.real.run(budget)
            cls = exit.__class__
            if cls is Interrupted:
                return exit
            if cls is Halt and self.port.pending:
                self.port.pending = False
                started = time.perf_counter()
                try:
                    result = self._trap()
                finally:
                    self.monitor_seconds += time.perf_counter() - started
                if result is not None:
                    return result
            elif cls is Halt and self.blocked is not None:
                return self._idle()
            else:
                self.crash(f"unexpected {cls.__name__} exit from the {self.engine.name} engine while "
                           "running the guest (the monitor's own tables failed)", self.real.get_state())

    # --- taking a trap ---------------------------------------------------------------------
    def _trap(self):
        self.traps += 1
        real = self.real.get_state()
        vector = T.stub_vector(self.region, real.eip)
        if vector is None or real.cs.selector != A.MONITOR_CODE:
            self.crash("the real CPU halted outside the monitor's trap stubs", real)
        external = self.real.tap.take(vector) if self.real.tap else False
        sp = self.region.physical(R.STACK) + (real.esp - self.region.linear(R.STACK))
        words = [self.region.read_u32(sp + 4 * i) for i in range(6)]
        code = None
        if vector in A.ERROR_CODE_VECTORS and not external:
            code, words = words[0], words[1:]
        if words[1] & 3 == 0:                                 # from ring 0: only the idle loop
            if not (external and self.tables.in_idle(words[0])):
                self.crash(f"trap {vector_name(vector)} inside the monitor", real)
            return self._interrupt(None, vector)
        st = real.copy()
        st.eip, st.eflags, st.esp = words[0], words[2], words[3]
        st.cs, st.ss = self.tables.segment(words[1] & 0xFFFF), self.tables.segment(words[4] & 0xFFFF)
        self.guest = st
        tracer = self.tracer
        if tracer is not None:
            self._trace_begin(tracer, st, vector, code, external, real.cr2)
        try:
            if external:
                return self._interrupt(st, vector)
            if vector == A.HYPERCALL_VECTOR:
                return self._hypercall(st)
            return self._exception(st, vector, code, real.cr2)
        except Undeliverable as u:
            self.crash(f"the guest crashed: {u}", st)
        finally:
            if tracer is not None:
                tracer.trap_end(self.trace_counters())

    # --- ringvisor run --trace -------------------------------------------------------------------
    def _trace_begin(self, tracer, st, vector: int, code, external: bool, cr2: int) -> None:
        if not external and vector == A.HYPERCALL_VECTOR:
            event = f"hypercall {A.HYPERCALLS.get(st.eax, st.eax)}"
            st = replace(st, eip=st.eip - 2)                # at the int $0x82, not after it
        elif not external and vector >= 32:
            event = f"int {vector:#04x}"
            st = replace(st, eip=st.eip - 2)                # a trap: EIP is past the int n
        else:
            event = trap_event(vector_name(vector), vector, code, external, cr2)
        # Direct paging: the real CR3 is the guest's own page directory.
        tracer.trap_begin(self, event, st.cs.selector & 3, st, self.memory, self.trace_counters(),
                          at_instruction=not external)

    def trace_counters(self) -> dict:
        return {"rejected": self.rejected, "delivered": self.bounced,
                "event": self.events, "": self.stats}

    def _interrupt(self, st: CpuState | None, vector: int):
        """An external interrupt; st is None if the CPU was idle (guest blocked)."""
        if vector != PIC_VECTOR:
            self.stats[f"irq vector {vector:#04x} ignored"] += 1
        elif self.timer.on_irq():
            self.raise_event(A.EVT_TIMER)
        if st is None:
            if not self.shared.pending:
                return self._resume_idle()
            st, self.blocked = self.blocked, None            # woken: back after its int $0x82
        return self._leave(st)

    def _hypercall(self, st: CpuState):
        nr = st.eax
        name = A.HYPERCALLS.get(nr)
        self.hypercalls[name or "(unknown)"] += 1
        self.in_hypercall = name
        try:
            if name is None:
                raise PvError(A.ENOSYS, "no such hypercall")
            result = HANDLERS[nr](self, st, st.ebx, st.ecx, st.edx, st.esi, st.edi)
        except PvError as e:
            self.rejected[f"{name or 'unknown'}: -{A.ERRNO_NAMES[e.errno]} {e.reason}"] += 1
            result = -e.errno
        finally:
            self.in_hypercall = None
        if result is not None:
            st.eax = result & 0xFFFFFFFF
        if self.blocked is not None:
            return self._resume_idle()
        return self._leave(st)

    def _exception(self, st: CpuState, vector: int, code, cr2: int):
        soft = self._software_int(st, vector, code)
        if soft is not None:
            vector, code = soft, None
            st.eip += 2
        entry = self.trap_table.get(vector)
        what = f"{vector_name(vector)}" + (f" (error code {code:#x})" if code is not None else "") + \
            (f" at {cr2:#010x}" if vector == PF else "")
        if entry is None:
            raise Undeliverable(f"{what} and no handler in its trap table for vector {vector:#04x}")
        if vector == PF and soft is None:
            self.shared.set_cr2(cr2)
        flags, handler = entry
        bounce(self, st, handler, code, bool(flags & A.TI_MASK_EVENTS), what)
        self.bounced["int " + hex(vector) if soft is not None or vector >= 32 else vector_name(vector)] += 1
        return self._leave(st)

    def _software_int(self, st: CpuState, vector: int, code) -> int | None:
        """`int n` on a vector whose exception has an error code arrives as
        #GP(n*8+2) (those gates stay DPL 0): the vector if the guest's
        table lets this ring use it and the instruction is `int n`."""
        if vector != GP or code is None or code & 7 != 2:
            return None
        n = code >> 3
        entry = self.trap_table.get(n)
        if n not in A.ERROR_CODE_VECTORS or entry is None or entry[0] & A.TI_DPL_MASK < st.cs.selector & 3:
            return None
        try:
            if self.gmmu.read(st.eip, 2, user=st.cs.selector & 3 == 3) != bytes([0xCD, n]):
                return None
        except (VirtualFault, ReservedAccess):
            return None
        return n

    # --- events and leaving the monitor ---------------------------------------------------------
    def raise_event(self, bit: int) -> None:
        self.shared.raise_event(bit)

    def update_time(self) -> None:
        self.shared.set_time(self.timer.now(), self.timer.tsc(), self.timer.tsc_khz)

    def _leave(self, st: CpuState):
        """Back to the guest, through its event callback if events are due."""
        if self.shared.deliverable():
            if self.callback is None:
                raise Undeliverable("events are pending and unmasked but no event callback is set "
                                    "(HC_SET_CALLBACK)")
            for bit, name in A.EVENT_NAMES.items():
                if self.shared.pending >> bit & 1:
                    self.events[name] += 1
            self.update_time()
            bounce(self, st, self.callback, None, True, "event upcall")
            self.stats["upcalls"] += 1
        return self._resume(st)

    def _resume(self, st: CpuState) -> None:
        self.tables.install(st)
        st.cr3 = self.vcpu.cr3
        self.real.set_state(st)
        self.guest = None
        return None

    def block(self, st: CpuState) -> None:
        """HC_BLOCK with nothing pending: the guest waits, the CPU idles."""
        if not self.timer.armed:
            self.crash("the guest blocked (HC_BLOCK) with no timer armed: no event can ever wake it", st)
        self.blocked = st
        self.stats["blocks"] += 1

    def _resume_idle(self):
        st = self.blocked.copy()
        self.tables.idle_state(st)
        self._resume(st)
        return None

    def _idle(self):
        """The idle loop halted: the machine lets virtual time jump to the timer."""
        return Halt()

    # --- services for hypercalls -----------------------------------------------------------------
    def read_guest(self, va: int, n: int) -> bytes:
        self._check_pointer(va, n)
        try:
            return self.gmmu.read(va, n, user=False)
        except (VirtualFault, ReservedAccess):
            raise PvError(A.EFAULT, "an unmapped guest pointer") from None

    def write_guest(self, va: int, data: bytes) -> None:
        self._check_pointer(va, len(data))
        try:
            self.gmmu.write(va, data, user=False)
        except (VirtualFault, ReservedAccess):
            raise PvError(A.EFAULT, "an unmapped or read-only guest pointer") from None

    @staticmethod
    def _check_pointer(va: int, n: int) -> None:
        if va + n > A.HOLE:
            raise PvError(A.EFAULT, "a guest pointer into the monitor's hole")

    def shutdown(self, status: int):
        raise GuestStopped(status, "shutdown hypercall")

    def crash(self, what: str, st: CpuState):
        view = st.copy()
        if self.in_hypercall:                     # show the int $0x82, not the instruction after
            view.eip -= 2
            what += f" (in hypercall {self.in_hypercall})"
        if self.shared is not None:
            view.eflags = (st.eflags & ~IF) | (0 if self.shared.masked else IF)
        translate = report.page_walk(view, self.memory) if view.cr0 & 0x80000000 else None
        raise GuestCrashed(f"{what}\n{report.describe(view, self.memory, translate)}\n"
                           f"  PV monitor: guest kernel in ring 1, events "
                           f"{'masked' if self.shared is None or self.shared.masked else 'unmasked'}, "
                           f"{self.traps:,} traps")

    # --- statistics -------------------------------------------------------------------------------
    def statistics(self) -> dict:
        s = self.stats
        return {
            "technique": "pv",
            "traps": self.traps,
            "hypercalls": sum(self.hypercalls.values()),
            "hypercalls_by_name": dict(self.hypercalls.most_common()),
            "rejected": dict(self.rejected.most_common()),
            "events_delivered": dict(self.events.most_common()),
            "upcalls": s["upcalls"],
            "bounced": dict(self.bounced.most_common()),
            "paging": {k: s[k] for k in ("pinned_l1", "pinned_l2", "unpinned_l1", "unpinned_l2",
                                         "l1_updates", "l2_updates")}
                      | {"pinned_now": len(self.paging.level)},
            "timer": dict(self.timer.stats),
            "blocks": s["blocks"],
            "monitor_host_seconds": round(self.monitor_seconds, 3),
            "monitor_us_per_trap": round(1e6 * self.monitor_seconds / self.traps, 1) if self.traps else 0.0,
        }
