"""A virtual machine: guest RAM, buses, devices, a loaded guest image, and the
vCPU loop that dispatches the engine's exits (it only dispatches: handling
lives in the devices and the monitors)."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ringvisor import exits as X
from ringvisor.boot import firmware, image
from ringvisor.boot.layout import Layout
from ringvisor.cpu_state import CR0_PG, EFLAGS_IF
from ringvisor.devices import debugcon, post_codes
from ringvisor.errors import GuestCrashed
from ringvisor.exits import GuestStopped
from ringvisor.machine import report
from ringvisor.machine.bus import MmioBus, PortBus
from ringvisor.machine.memory import GuestMemory
from ringvisor.machine.watchdog import Watchdog

DEBUG_EXIT_PORT = 0xF4
COM1, COM1_IRQ = 0x3F8, 4


@dataclass
class MachineConfig:
    """The machine's share of a run's configuration (vm.VmConfig has the rest)."""
    kernel: str
    engine: str = "kvm"            # the engine's name, for reports
    memory: int = 128 << 20         # QEMU's pc machine default
    cmdline: str = ""
    modules: tuple[str, ...] = ()
    image_format: str = "auto"
    timeout: float | None = None
    reserved_top: int = 0          # bytes at the top of RAM kept from the guest (a monitor's)
    reserved_linear: int = 0       # bytes at the top of the linear address space likewise
    bios: str | None = None        # a firmware ROM started at the reset vector instead of a kernel
    halt_ok: bool = False          # a final `cli; hlt` ends the run with status 0, not as a crash


@dataclass
class RunResult:
    status: int                    # the guest's exit status (debug-exit port)
    reason: str
    wall_seconds: float
    stats: dict = field(default_factory=dict)


SLICE = 200_000                    # soft engine: instructions between looks at the devices


class Machine:
    def __init__(self, config: MachineConfig, console: Callable[[bytes], None],
                 make_engine: Callable[["Machine"], object]):
        """`make_engine(machine)` builds the engine once memory and buses exist
        (vm.create_engine; tests pass one that replays synthetic exits)."""
        self.config, self.console = config, console
        self.memory = GuestMemory(config.memory)
        self.layout = Layout(config.memory, config.reserved_top)
        self.ports, self.mmio = PortBus(), MmioBus()
        self.result: RunResult | None = None
        self.trace = None              # a machine.trace.Trace (ringvisor run --trace)
        self.platform = None           # the soft engine's PIC, PIT and clock
        self.pic = None                # the soft CPU's interrupt input (8259 pair, or the BSP's APIC)
        self.smp = None                # machine/smp.py's SoftCpus, with several CPUs
        self.aps = None                # machine/vcpu_threads.py's VcpuThreads (kvm, several vCPUs)
        self.device_lock = threading.Lock()   # held by a vCPU thread while its exit is served
        self.reporting_cpu = None      # the CPU a crash report describes, if not the first
        self.started: float | None = None  # the first run() (a debugger may run the guest in parts)
        self.engine = make_engine(self)
        try:
            self._attach_devices()
            if config.bios:
                pc = self.platform.pc if self.platform is not None else None
                state = firmware.load(config.bios, self.memory, self.mmio, self._cpu_signature(),
                                      pam=pc.pam if pc is not None else None)
            else:
                state = image.load(config.kernel, self.memory, self.layout, config.cmdline,
                                   config.modules, config.image_format, config.reserved_linear,
                                   apic=self.platform is not None and self.platform.pc is not None)
            self.engine.set_state(state)
        except BaseException:
            self.engine.close()
            raise
        self._handlers = {X.Io: self._on_io, X.Mmio: self._on_mmio, X.Halt: self._on_halt,
                          X.Shutdown: self._on_shutdown, X.InternalError: self._on_internal_error,
                          X.Interrupted: self._on_interrupted, X.Unknown: self._on_unknown,
                          X.Fault: self._on_fault}

    # -- devices ---------------------------------------------------------------
    def _attach_devices(self) -> None:
        from ringvisor.devices.debug_exit import DebugExit
        from ringvisor.devices.legacy import register_ignored
        from ringvisor.devices.uart16550 import Uart16550
        self.uart = Uart16550(irq=self.irq_line(COM1_IRQ), output=self.console)
        self.ports.register(COM1, 8, self.uart, "uart16550 (COM1)")
        self.ports.register(DEBUG_EXIT_PORT, 1, DebugExit(on_exit=self._guest_exit), "debug-exit")
        self.debugcon = debugcon.DebugCon(self.console)
        self.ports.register(debugcon.PORT, 1, self.debugcon, "debugcon")
        if hasattr(self.engine, "coalesce_port"):
            self.engine.coalesce_port(debugcon.PORT, 1)
        if self.config.bios:
            # SeaBIOS's debug output port (QEMU: -debugcon with isa-debugcon.iobase=0x402).
            self.ports.register(debugcon.FIRMWARE_PORT, 1, self.debugcon, "debugcon (firmware)")
        self.post = post_codes.PostCodes()
        self.post.register(self.ports)
        register_ignored(self.ports)

    def _cpu_signature(self) -> int:
        """EDX after RESET: the processor signature, CPUID.1:EAX (SDM 9.1.4)."""
        return getattr(self.engine, "cpuid", {}).get(1, (0,))[0]

    def irq_line(self, irq: int):
        """A device's interrupt line: into KVM's in-kernel irqchip, or into
        the soft platform's 8259 pair."""
        if self.platform is not None:
            return self.platform.irq_line(irq)
        return self.engine.irq_line(irq)

    def _guest_exit(self, status: int) -> None:
        raise GuestStopped(status, "debug-exit")

    def on_coalesced(self, addr: int, size: int, data: bytes, pio: bool) -> None:
        value = int.from_bytes(data, "little")
        (self.ports if pio else self.mmio).write(addr, size, value)

    # -- exits -----------------------------------------------------------------
    def _on_io(self, io: X.Io) -> None:
        """String port I/O (engines serve single accesses from the bus themselves)."""
        port, size, data = io.port, io.size, io.data
        for i in range(0, size * io.count, size):
            if io.write:
                self.ports.write(port, size, int.from_bytes(data[i:i + size], "little"))
            else:
                data[i:i + size] = self.ports.read(port, size).to_bytes(size, "little")

    def _on_mmio(self, m: X.Mmio) -> None:
        if m.write:
            self.mmio.write(m.address, m.size, int.from_bytes(m.data, "little"))
        else:
            m.data[:] = self.mmio.read(m.address, m.size).to_bytes(m.size, "little")

    def _on_halt(self, exit: X.Halt) -> None:
        if self.watchdog.reason in ("quit", "timeout"):
            # A guest idling in HLT between timer ticks never ends a slice by
            # its budget: --timeout and Ctrl-A x are seen here.
            return self._on_interrupted(X.Interrupted())
        if self.platform is None:
            self._crash("the guest halted with nothing that can wake it")
        if not self.engine.get_state().eflags & EFLAGS_IF:
            self._halted_for_good()
        if self.platform.skip_to_next_event():
            return
        # No timer will fire: only the console (keyboard input) can wake it.
        while not self.pic.pending():
            if self.watchdog.reason in ("quit", "timeout"):
                return self._on_interrupted(X.Interrupted())
            time.sleep(0.01)

    def _on_shutdown(self, exit: X.Shutdown) -> None:
        self._crash(f"the guest shut down: {exit.reason} (a triple fault means an exception "
                    "it could not handle, not even as a double fault)")

    def _on_internal_error(self, exit: X.InternalError) -> None:
        where = f"{self.config.engine} engine internal error: {exit.description}"
        if self.config.engine == "kvm" and getattr(self.engine, "backend", None) and \
                self.engine.backend.emulates_ring0 and exit.suberror == 1:
            where += " (PVM emulates guest ring-0 code in the host kernel and lacks this instruction)"
        self._crash(where, insn=exit.instruction)

    def _on_fault(self, exit: X.Fault) -> None:
        code = "" if exit.error_code is None else f" error code {exit.error_code:#x}"
        self._crash(f"exception {exit.vector}{code} reached the machine with no monitor to handle it")

    def _on_unknown(self, exit: X.Unknown) -> None:
        self._crash(f"unexpected exit {exit.reason} {exit.detail}")

    def dispatch(self, exit: X.Exit) -> None:
        """Serve one exit of any vCPU (string port I/O included)."""
        if exit.__class__ is X.Io:
            return self._on_io(exit)
        self._handlers[exit.__class__](exit)

    def _on_interrupted(self, exit: X.Interrupted) -> None:
        if self.aps is not None and self.aps.outcome is not None:
            raise self.aps.outcome          # an AP's thread stopped the guest or saw it crash
        why = self.watchdog.reason
        self.watchdog.reason = None
        if why == "quit":
            raise GuestStopped(130, "quit (Ctrl-A x)")
        if why == "timeout":
            self._crash(f"the guest did not finish within {self.config.timeout:g} s")
        if why == "idle" and self.config.engine == "kvm":
            state = self.engine.get_state()
            if self.engine.halted() and not state.eflags & EFLAGS_IF:
                self._halted_for_good()

    def _halted_for_good(self) -> None:
        """`cli; hlt`: nothing but an NMI or a reset can wake the CPU. A
        crash, unless the user said it is how this guest ends (--halt-ok:
        firmware that finished its POST, a test ROM)."""
        if self.config.halt_ok:
            state = self.engine.get_state()
            raise GuestStopped(0, f"halted with interrupts disabled (cli; hlt), next "
                                  f"instruction at {state.cs.selector:04x}:{state.eip:08x}")
        self._crash("the guest halted with interrupts disabled (cli; hlt): nothing can wake it"
                    " (--halt-ok ends such a run with status 0)")

    def _crash(self, what: str, insn: bytes = b"") -> None:
        engine = self.engine
        if self.reporting_cpu is not None:
            engine = self.reporting_cpu.engine
            what = f"cpu{self.reporting_cpu.index}: {what}"
        state = engine.get_state()
        translate = getattr(getattr(self.engine, "vcpu", None), "translate", None)
        if translate is None and state.protected and state.cr0 & CR0_PG:
            translate = report.page_walk(state, self.memory)
        raise GuestCrashed(f"{what}\n{report.describe(state, self.memory, translate, insn)}")

    # -- the vCPU loop -------------------------------------------------------------
    def exits_so_far(self) -> int:
        """The watchdog's sign of life: exits on KVM; on the soft engine,
        instructions retired plus halts skipped (it never blocks inside run)."""
        if self.platform is not None:
            return sum(cpu.instructions for cpu in self.platform.cpus) + self.platform.idle_skips
        vcpus = getattr(self.engine, "vcpus", None) or [getattr(self.engine, "vcpu", None)]
        return sum(sum(getattr(v, "exit_counts", ())) for v in vcpus)

    def _run_soft(self):
        """One slice on the soft engine, cut where the PIT's next edge falls
        so timer interrupts arrive at the same instruction on every run."""
        platform = self.platform
        platform.engine.slice = platform.budget(SLICE)
        try:
            exit = self.engine.run()
        finally:
            platform.sync()             # also when a debugger's stop leaves run() early
        if exit.__class__ is X.Interrupted and platform.pc is not None:
            apic = platform.pc.interrupts
            if apic.init_pending:
                platform.reset("INIT to the bootstrap processor")
            apic.take_sipi()                 # a SIPI finds the BSP running: ignored
        return exit

    def attach_trace(self, trace) -> None:
        """`ringvisor run --trace`: the machine's exits, and the monitor's
        traps when the engine is a monitor."""
        self.trace = trace
        if trace is None:
            return
        if hasattr(self.engine, "tracer"):
            self.engine.tracer = trace
        if hasattr(self.engine, "see_every_exit"):
            self.engine.see_every_exit()

    def _traced(self, run):
        trace = self.trace
        cpu = self.platform.engine if self.platform is not None else None

        def traced_run():
            exit = run()
            trace.exit(exit, cpu.instructions if cpu is not None else None)
            return exit
        return traced_run

    def request_quit(self) -> None:
        self.watchdog.kick("quit")

    def run(self) -> RunResult:
        run = self.engine.run if self.platform is None else self._run_soft
        if self.platform is not None and len(self.platform.cpus) > 1:
            from ringvisor.machine.smp import SoftCpus
            self.smp = SoftCpus(self)
            run = self.smp.run_round
        if self.trace is not None:
            run = self._traced(run)
        on_io, handlers, Io = self._on_io, self._handlers, X.Io
        vcpus = getattr(self.engine, "vcpus", ())
        if len(vcpus) > 1:
            on_io = self._serialised(handlers)
            handlers = dict.fromkeys(handlers, on_io)
        self.watchdog = Watchdog(self.engine, self.config.timeout, self.exits_so_far).start()
        if len(vcpus) > 1:
            from ringvisor.machine.vcpu_threads import VcpuThreads
            self.aps = VcpuThreads(self, vcpus[1:]).start()
        if self.started is None:
            self.started = time.perf_counter()
        start = self.started
        try:
            while True:
                exit = run()
                if exit.__class__ is Io:
                    on_io(exit)
                else:
                    handlers[exit.__class__](exit)
        except GuestStopped as stop:
            wall = time.perf_counter() - start
            self._stop_aps()        # before statistics: a vCPU's ioctls wait while it is in KVM_RUN
            return RunResult(stop.status, stop.reason, wall, self.statistics(wall))
        finally:
            self._stop_aps()
            self.watchdog.close()

    def _stop_aps(self) -> None:
        if self.aps is not None:
            self.aps.stop()

    def _serialised(self, handlers):
        """The bootstrap processor's exits served under the device lock,
        as the APs' threads serve theirs (the Interrupted exit outside it:
        it may raise an AP's outcome)."""
        lock, interrupted = self.device_lock, handlers[X.Interrupted]

        def on_exit(exit):
            if exit.__class__ is X.Interrupted:
                return interrupted(exit)
            with lock:
                self.dispatch(exit)
        return on_exit

    def statistics(self, wall: float) -> dict:
        e = self.engine
        bus = self.ports
        ports = [{"port": p, "device": bus.name_of(p), "reads": bus.read_counts[p],
                  "writes": bus.write_counts[p]}
                 for p in range(PortBus.SIZE) if bus.read_counts[p] or bus.write_counts[p]]
        stats = {"engine": e.name, "wall_seconds": wall, "ports": ports,
                 "post_codes": self.post.statistics(),
                 "unknown_accesses": [{"bus": b, "access": a, "address": x, "count": n}
                                      for (b, a, x), n in sorted((self.ports.unknown + self.mmio.unknown).items())]}
        if self.platform is not None:
            cpu = self.platform.cpus[0]
            instructions = sum(c.instructions for c in self.platform.cpus)
            stats["instructions"] = instructions
            stats["mips"] = instructions / wall / 1e6 if wall > 0 else 0.0
            stats["platform"] = self.platform.statistics()
            if self.smp is not None:
                stats["cpus"] = self.smp.statistics()
            elif self.platform.pc is not None:
                from ringvisor.machine.smp import cpu_statistics
                stats["cpus"] = [cpu_statistics(e if hasattr(e, "traps") else cpu,
                                                self.platform.pc.interrupts, index=0)]
            if cpu is not e:
                stats["monitor"] = e.statistics()
        if e.name == "kvm":
            stats["cpus"] = e.cpu_statistics()
            stats["backend"] = {"name": e.backend.name, "description": e.backend.description}
            stats["userspace_exits"] = e.userspace_exits()
            stats["coalesced_writes"] = e.vcpu.coalesced_writes
            stats["kernel"] = {k: {n: v for n, v in d.items() if v} for k, d in e.kernel_stats_delta().items()}
        return stats

    def close(self) -> None:
        self.engine.close()
