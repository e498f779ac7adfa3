"""What the GDB stub asks of the machine it debugs: the target interface.

The stub (`ringvisor.gdb.session`) speaks gdb's protocol; a *target* is one
virtual CPU and its memory as **the guest** sees them. An engine/monitor pair
implements `Target`:

- registers are the guest's view (`CpuState`): under trap, bt and pv the
  monitor's virtual CPU (virtual CPL, virtual IF/IOPL, the guest's GDT/IDT and
  CR3), never the deprivileged state the real (soft) CPU holds;
- memory is addressed by guest *linear* address, translated through the guest's
  own page tables; an address that is not mapped, or not backed by RAM, raises
  `MemoryFault` and changes nothing (no #PF is injected, no A/D bit is set);
- `resume(step)` runs the guest until something stops it and returns why, as
  one of the `Stop` values below. It runs in the caller's thread (the vCPU
  thread); `interrupt()` is the only method called from another thread (the
  stub's socket reader, on Ctrl-C or when the client vanishes) and must make a
  running `resume` return `Interrupted()` soon;
- breakpoints and watchpoints are kept by the stub, which hands the target the
  complete current sets whenever they change (`set_breakpoints`,
  `set_watchpoints`). The soft engine can check the breakpoint set against EIP
  at every block boundary (and stop blocks before an address in the set) and the
  watchpoints in its memory slow path; the kvm engine maps software breakpoints
  to `int3` exits and hardware ones and watchpoints to the debug registers
  through KVM_SET_GUEST_DEBUG (four slots: `hardware_slots = 4`).

Stops are reported the way x86 hardware reports them: a breakpoint stops
*before* the instruction at its address runs (EIP = that address); a
watchpoint stops *after* the instruction that touched the watched bytes has
retired (EIP = the next instruction), with the data address; a single step
retires exactly one guest instruction (an interrupt or exception delivered
instead counts as the step and leaves EIP at the handler).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Mapping, Protocol, runtime_checkable

from ringvisor.cpu_state import CpuState


class MemoryFault(Exception):
    """A linear address the guest's paging (or the end of RAM) does not map.
    `address` is the first byte that could not be accessed."""

    def __init__(self, address: int, reason: str = "not mapped"):
        super().__init__(f"linear address {address:#010x}: {reason}")
        self.address = address
        self.reason = reason


class TargetError(Exception):
    """The target refuses a request (a register it cannot set, a feature the
    engine's hardware lacks); the message is one line for the gdb user."""


class WatchKind(Enum):
    WRITE = "watch"       # Z2: stop after a write
    READ = "rwatch"       # Z3: stop after a read
    ACCESS = "awatch"     # Z4: stop after a read or a write


@dataclass(frozen=True)
class Watchpoint:
    address: int          # linear
    length: int           # bytes (gdb sends 1, 2, 4 or 8; the soft engine takes any)
    kind: WatchKind

    def covers(self, address: int, size: int) -> bool:
        return address < self.address + self.length and self.address < address + size


# Why `resume` returned.
class Stop:
    pass


@dataclass(frozen=True)
class BreakpointHit(Stop):
    address: int          # EIP, before the instruction there ran


@dataclass(frozen=True)
class WatchpointHit(Stop):
    address: int          # the data address accessed (inside a watched range)
    kind: WatchKind       # what the access was, as far as the watchpoint cares


@dataclass(frozen=True)
class Stepped(Stop):
    pass


@dataclass(frozen=True)
class Interrupted(Stop):
    pass


@dataclass(frozen=True)
class Exited(Stop):
    code: int             # the guest's exit status (debug-exit port and the like)


@dataclass(frozen=True)
class Crashed(Stop):
    """The guest can run no further (triple fault, hang with interrupts off,
    engine failure); `message` is the one-line reason the run would print."""
    message: str


@runtime_checkable
class Target(Protocol):
    """One guest CPU and its memory, as the stub drives them."""

    #: How many hardware breakpoints plus watchpoints can be set at once
    #: (None: no limit, as on the soft engine; 4 for x86 debug registers).
    hardware_slots: int | None

    def read_registers(self) -> CpuState:
        """The guest's view of its CPU (a copy the stub may modify)."""

    def write_registers(self, state: CpuState) -> None:
        """Make `state` the guest's view. A changed segment selector is a
        segment load as the guest would do it (real mode: base = selector*16);
        raise TargetError for what cannot be set."""

    def read_memory(self, address: int, length: int) -> bytes:
        """`length` bytes at guest linear `address`, or MemoryFault."""

    def write_memory(self, address: int, data: bytes) -> None:
        """Write at guest linear `address`, all or nothing: MemoryFault leaves
        memory unchanged. Translated code (bt, the soft CPU's block cache)
        covering the bytes must be dropped."""

    def resume(self, step: bool) -> Stop:
        """Run (one instruction when `step`) until a stop; see module doc."""

    def interrupt(self) -> None:
        """Ask a running `resume` to return Interrupted() soon. Thread-safe.
        The request is latched: made while no `resume` runs, it makes the next
        one return Interrupted() before running anything (a Ctrl-C racing the
        stub's own `c` is never lost); returning Interrupted() clears it."""

    def set_breakpoints(self, software: frozenset[int], hardware: frozenset[int]) -> None:
        """The complete sets of breakpoint addresses (linear EIPs)."""

    def set_watchpoints(self, watchpoints: tuple[Watchpoint, ...]) -> None:
        """The complete list of watchpoints."""

    def stats(self) -> Mapping:
        """The same figures `--stats` shows (the run's stats dictionary)."""

    def describe(self) -> str:
        """One line: engine and technique, e.g. 'soft engine, bt (ring 1)'."""
