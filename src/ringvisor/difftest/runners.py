"""Run one test program on one engine and read its outcome.

Both runners load the same world image, code, data and stack bytes and the
same start state; both runs end in the same guest code (a stub or the
CPL-0 terminator, see world.py), and the outcome is read from the same
places. What differs is only how each engine reports that the guest wrote
the harness port: the KVM engine returns an Io exit, the soft engine's port
bus records the write and run() returns at the HLT after it.
"""
from __future__ import annotations

import random
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass

from ringvisor import exits as X
from ringvisor.difftest.program import Case, Program
from ringvisor.difftest.world import (CODE, DATA, DATA_SIZE, PORT, RAM, STACK, STACK_SIZE, Outcome,
                                      base_image, read_outcome, start_state)
from ringvisor.machine.bus import MmioBus, PortBus
from ringvisor.machine.memory import GuestMemory

SOFT_BUDGET = 20_000          # instructions; a test runs a few hundred at most
KVM_TIMEOUT = 2.0             # seconds; a test takes microseconds on silicon


@dataclass
class Skip:
    """The engine could not run the test (PVM's emulator lacks an instruction)."""
    reason: str
    mnemonic: str
    instruction: bytes = b""


def test_bytes(seed: int) -> tuple[bytes, bytes]:
    rng = random.Random(seed)
    return rng.randbytes(DATA_SIZE), rng.randbytes(STACK_SIZE)


def load(memory: GuestMemory, image: bytes, case: Case, program: Program) -> None:
    memory.write(0, image[:CODE])
    data, stack = test_bytes(case.seed)
    memory.write(DATA, data)
    memory.write(STACK, stack)
    memory.write(CODE, program.code + bytes(0x1000 - len(program.code) % 0x1000))


class _PortRecorder:
    def __init__(self):
        self.writes = 0

    def io_read(self, offset: int, size: int) -> int:
        return 0xFF

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.writes += 1


class SoftRunner:
    def __init__(self, paging: bool = False, blocks: bool = True):
        from ringvisor.cpu import SoftEngine
        self.paging, self.blocks = paging, blocks
        self.memory = GuestMemory(RAM)
        self.ports = PortBus()
        self.recorder = _PortRecorder()
        self.ports.register(PORT, 1, self.recorder, "difftest")
        self.cpu = SoftEngine(self.memory, self.ports, MmioBus())
        self.cpu.use_blocks = blocks
        self.image = bytes(base_image(paging))

    def run(self, case: Case, program: Program) -> Outcome:
        load(self.memory, self.image, case, program)
        self.cpu.set_state(start_state(case.cpl, case.eflags, case.regs, self.paging))
        self.recorder.writes = 0
        e = self.cpu.run(max_instructions=SOFT_BUDGET)
        if isinstance(e, X.Halt) and self.recorder.writes == 1:
            return read_outcome(self.cpu.get_state(), self.memory, case.cpl, program.end_eip)
        return Outcome(type(e).__name__.lower(), eip=self.cpu.eip,
                       detail=f"soft run ended with {e!r} after {self.recorder.writes} port writes")

    def close(self) -> None:
        self.cpu.close()
        self.memory.close()


class _Timeout(Exception):
    pass


@contextmanager
def _deadline(seconds: float):
    """Interrupt a KVM_RUN that never returns (a guest spinning or halted):
    the signal handler raises, which ends the ioctl's EINTR retry loop."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise _Timeout()
    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class KvmRunner:
    """The kvm engine (real silicon at CPL 3 everywhere; at CPL 0 on PVM,
    the host kernel's instruction emulator). `paging=None` enables paging
    where the backend allows it in 32-bit mode (not on PVM)."""

    def __init__(self, paging: bool | None = None):
        from ringvisor.kvm import backend
        self.memory = GuestMemory(RAM)
        self.backend = backend.detect()
        self.paging = (not self.backend.emulates_ring0) if paging is None else paging
        self.image = bytes(base_image(self.paging))
        self.engine = None
        self.restarts = 0
        self.runs = 0
        self.emulated = 0          # instructions KVM's emulator executed (insn_emulation)
        self._open()

    def _open(self) -> None:
        from ringvisor.kvm.engine import KvmEngine
        if self.engine is not None:
            self.engine.close()
            self.restarts += 1
        self.engine = KvmEngine(self.memory)

    def run(self, case: Case, program: Program) -> Outcome | Skip:
        load(self.memory, self.image, case, program)
        self.engine.set_state(start_state(case.cpl, case.eflags, case.regs, self.paging))
        before = self._emulations()
        self.runs += 1
        try:
            with _deadline(KVM_TIMEOUT):
                e = self.engine.run()
                while isinstance(e, X.Io) and e.port != PORT:
                    # The test's own port I/O: nothing there (reads are all
                    # ones, as on the soft engine's bus).
                    if not e.write:
                        e.data[:] = b"\xff" * len(e.data)
                    e = self.engine.run()
            self.emulated += self._emulations() - before
        except _Timeout:
            self._open()
            return Outcome("timeout", detail="KVM_RUN did not return")
        if isinstance(e, X.Io) and e.port == PORT and e.write:
            return read_outcome(self.engine.get_state(), self.memory, case.cpl, program.end_eip)
        eip = self.engine.get_state().eip
        # Any other exit may leave KVM mid-instruction (an MMIO read waiting
        # for its data): start the next test on a fresh VM.
        self._open()
        if isinstance(e, X.InternalError):
            return Skip(e.description, program.mnemonic_at(eip) or f"at {eip:#x}", bytes(e.instruction))
        return Outcome(type(e).__name__.lower(), eip=eip, detail=f"kvm exit {e!r}")

    def _emulations(self) -> int:
        stats = self.engine.vcpu_stats
        return stats.read().get("insn_emulation", 0) if stats else 0

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None
