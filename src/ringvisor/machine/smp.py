"""Several CPUs on the soft engine (`--cpus N`): one host thread runs them
in turn, in deterministic quanta of virtual time.

A round starts with every CPU's clock at the same instant t0 and ends at
t1 = t0 + the quantum, cut earlier where a timer (PIT, RTC, any local APIC
timer, PM timer, HPET) is due, as the one-CPU slice is. Each CPU in order
(the bootstrap processor first) runs up to t1 on its own clock; a CPU that
halts, or waits for a SIPI, spends the rest of the round idle, its clock and
TSC moving on as a sleeping processor's do. At t1 the timers fire, and the
next round begins. When no CPU can run, virtual time jumps to the next
timer edge. So a run repeats to the instruction, whatever the host does.

What follows from it, stated:
- an IPI, or a device's interrupt, reaches a CPU that already ran this
  round at the start of the next (at most one quantum later); one sent to a
  later CPU in the order is seen in the same round;
- memory is sequentially consistent and LOCK-prefixed instructions are
  trivially atomic: one instruction of one CPU executes at a time;
- NMI, INIT and SIPI are taken where the CPU next looks at its APIC
  (cpu/engine.py): between blocks, at the latest at the end of its turn;
- PAUSE ends the executing CPU's turn (the engine's `Paused` exit, as
  PAUSE-loop exiting does for a hypervisor): a CPU spinning on a lock gives
  the rest of its quantum to the others (the holder among them) instead of
  burning it, and its clock idles to the round's end. SeaBIOS's AP
  bring-up needs it: with fixed quanta its lock handoff lined up with the
  quantum and the AP never got the lock.

INIT and SIPI (SDM 8.4, 9.1): an application processor starts the run
waiting for a SIPI, as the firmware leaves it; INIT puts it back there with
the registers of Table 9-1 (its APIC, MSRs, x87 and TSC untouched); a SIPI
with vector V starts it in real mode at V<<8:0000. INIT to the bootstrap
processor restarts the firmware on a PC: here it ends the run as a reset.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from ringvisor import exits as X
from ringvisor.cpu_state import CpuState, Segment
from ringvisor.exits import GuestStopped
from ringvisor.machine.soft_platform import NS_PER_INSTRUCTION

QUANTUM = 10_000                 # instructions per CPU per round: 100 µs of virtual time
EFLAGS_IF = 1 << 9


def init_state(signature: int) -> CpuState:
    """The registers after INIT (SDM Table 9-1): real mode at F000:FFF0 with
    CS.base FFFF0000, EDX the processor signature."""
    return CpuState.after_reset(signature)


def startup_state(vector: int, signature: int) -> CpuState:
    """A SIPI's start: the INIT state with CS = vector<<8, IP = 0 (SDM 8.4.4.1)."""
    state = init_state(signature)
    state.cs = Segment.real(vector << 8, code=True)
    state.eip = 0
    return state


@dataclass
class CpuRecord:
    index: int
    engine: object
    apic: object
    parked: bool                  # waiting for a SIPI
    inits: int = 0
    startups: int = 0


class SoftCpus:
    """The round-robin of the machine's CPUs; `run_round()` is the machine's
    run step (it returns Interrupted so the vCPU loop sees the watchdog)."""

    def __init__(self, machine, quantum: int = QUANTUM):
        self.machine, self.platform = machine, machine.platform
        self.quantum = quantum
        apics = self.platform.pc.lapics
        # The hw monitor's vCPUs stand for the soft CPUs they run on (smp_cpus).
        engines = getattr(machine.engine, "smp_cpus", None) or self.platform.cpus
        self.cpus = [CpuRecord(i, engine, apics[i], parked=i > 0)
                     for i, engine in enumerate(engines)]
        for record in self.cpus[1:]:
            record.apic.wait_for_sipi = True
        for record in self.cpus:
            record.engine.yield_on_pause()   # a soft CPU, or a hw vCPU (PAUSE exiting)
        self.rounds = 0

    # -- one round ------------------------------------------------------------------
    def run_round(self):
        platform = self.platform
        self.rounds += 1
        runnable = [c for c in self.cpus if self._signals(c) and self._can_run(c)]
        if not runnable:
            return self._all_idle()
        t0 = platform.cpu_now_ns(0)
        nxt = platform.next_event_ns()
        budget = self.quantum if nxt is None else \
            max(1, min(self.quantum, -(-(nxt - t0) // NS_PER_INSTRUCTION)))
        t1 = t0 + budget * NS_PER_INSTRUCTION
        for record in runnable:
            self._turn(record, t1)
        for record in self.cpus:
            behind = t1 - platform.cpu_now_ns(record.index)
            if behind > 0:
                platform.idle_cpu(record.index, behind)
        platform.switch_to(0)
        platform.sync()                      # every clock is at t1: the timers fire
        return X.Interrupted()

    def _turn(self, record: CpuRecord, t1: int) -> None:
        """CPU `record` runs until its clock reaches t1, it halts or parks."""
        platform, machine, engine = self.platform, self.machine, record.engine
        platform.switch_to(record.index)
        machine.reporting_cpu = record
        try:
            while not record.parked:
                left = -(-(t1 - platform.now_ns()) // NS_PER_INSTRUCTION)
                if left <= 0:
                    return
                exit = engine.run(left)
                platform.sync()
                kind = exit.__class__
                if kind is X.Halt or kind is X.Paused:
                    return
                if kind is X.Interrupted:
                    self._signals(record)
                elif kind is X.Io:
                    machine._on_io(exit)
                else:
                    machine._handlers[kind](exit)
        finally:
            machine.reporting_cpu = None

    # -- INIT, SIPI -------------------------------------------------------------------
    def _signals(self, record: CpuRecord) -> bool:
        """Take a pending INIT and SIPI; True unless the CPU waits for a SIPI."""
        apic, engine = record.apic, record.engine
        if apic.init_pending:
            apic.take_init()
            record.inits += 1
            if record.index == 0:
                self.platform.reset("INIT to the bootstrap processor")
            engine.set_state(init_state(self._signature(engine)))
            record.parked = True
        if apic.sipi_vector is not None:
            vector = apic.take_sipi()
            if record.parked:
                engine.set_state(startup_state(vector, self._signature(engine)))
                record.parked = False
                record.startups += 1
        return not record.parked

    @staticmethod
    def _signature(engine) -> int:
        return getattr(engine, "cpuid", {}).get(1, (0,))[0]

    @staticmethod
    def _can_run(record: CpuRecord) -> bool:
        engine, apic = record.engine, record.apic
        if not engine.halted:
            return True
        if apic.nmi_pending and not engine.nmi_blocked:
            return True
        return bool(engine.flags & EFLAGS_IF) and apic.pending()

    # -- nobody can run -----------------------------------------------------------------
    def _all_idle(self):
        """Every CPU halted (or waits for a SIPI): time jumps to the next
        timer edge; with none, only the console can wake a CPU."""
        machine = self.machine
        if machine.watchdog.reason in ("quit", "timeout"):
            return X.Interrupted()
        started = [c for c in self.cpus if not c.parked]
        if all(not c.engine.flags & EFLAGS_IF for c in started):
            if machine.config.halt_ok:
                raise GuestStopped(0, "every CPU halted with interrupts disabled (cli; hlt)")
            machine.reporting_cpu = started[0] if started else None
            machine._crash("every CPU halted with interrupts disabled (cli; hlt): nothing can wake them")
        if self.platform.skip_to_next_event():
            return X.Interrupted()
        while not any(self._can_run(c) for c in started):
            if machine.watchdog.reason in ("quit", "timeout"):
                break
            time.sleep(0.01)
        return X.Interrupted()

    # -- statistics ------------------------------------------------------------------------
    def statistics(self) -> list[dict]:
        return [cpu_statistics(c.engine, c.apic, index=c.index, inits=c.inits, startups=c.startups)
                for c in self.cpus]


def cpu_statistics(engine, apic, *, index: int, inits: int = 0, startups: int = 0) -> dict:
    """One CPU's figures for --stats (`cpu<N> instructions=<count> ...`)."""
    s = apic.stats
    exits = getattr(engine, "traps", None)          # a monitor's vCPU: its VM exits
    return {"cpu": index, "apic_id": apic.id, "instructions": engine.instructions,
            **({"exits": exits} if exits is not None else {}),
            "ipis_sent": sum(s.ipis_sent.values()), "ipis_received": s.ipis_received,
            "interrupts": sum(s.delivered.values()), "timer_expiries": s.timer_expiries,
            "nmis": s.nmis, "inits": inits, "startups": startups,
            "pause_yields": getattr(engine, "pause_count", 0)}
