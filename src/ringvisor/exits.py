"""Typed exits: what an engine reports when the guest needs the machine.

Engines return these from `run()`; the vCPU loop dispatches on the type and
nothing else. The KVM engine reuses one instance per type and vCPU (the exit
path must not allocate), so a consumer that keeps an exit beyond the next
`run()` must copy it (`dataclasses.replace`).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Exit:
    pass


@dataclass(slots=True)
class Io(Exit):
    """Port I/O: `count` transfers of `size` bytes (count > 1 for REP INS/OUTS).
    `data` is the transfer buffer: written data for OUT, to be filled for IN."""
    port: int = 0
    size: int = 1
    write: bool = False
    count: int = 1
    data: memoryview | bytearray | None = None


@dataclass(slots=True)
class Mmio(Exit):
    address: int = 0
    size: int = 0
    write: bool = False
    data: memoryview | bytearray | None = None


@dataclass(slots=True)
class Halt(Exit):
    """HLT with nothing to wake the vCPU (no interrupt controller in the kernel)."""


@dataclass(slots=True)
class Shutdown(Exit):
    """Triple fault (or an explicit shutdown): the machine resets or stops."""
    reason: str = "triple fault"


@dataclass(slots=True)
class Interrupted(Exit):
    """The run was cut short from the host side (signal, immediate_exit)."""


@dataclass(slots=True)
class Paused(Exit):
    """The soft CPU executed PAUSE with yielding on (several CPUs): it spins
    on a lock, so the scheduler ends its turn (PAUSE-loop exiting)."""


@dataclass(slots=True)
class InternalError(Exit):
    """The engine could not go on: KVM's emulation failure, or the like."""
    suberror: int = 0
    description: str = ""
    instruction: bytes = b""
    data: tuple[int, ...] = ()


@dataclass(slots=True)
class Fault(Exit):
    """A guest exception routed to the monitor (a trap, in DESIGN.md's words)."""
    vector: int = 0
    error_code: int | None = None
    cr2: int = 0


@dataclass(slots=True)
class Hypercall(Exit):
    """An explicit call from a paravirtual guest into the monitor."""
    number: int = 0
    args: tuple[int, ...] = ()


@dataclass(slots=True)
class DebugExit(Exit):
    """The guest asked to stop with a status (debug-exit port)."""
    status: int = 0


@dataclass(slots=True)
class Debug(Exit):
    """KVM_EXIT_DEBUG: a guest debugging event KVM intercepted for a debugger
    (exception 1 with DR6, or 3 for an int3), `pc` its linear address."""
    exception: int = 0
    pc: int = 0
    dr6: int = 0


@dataclass(slots=True)
class Unknown(Exit):
    reason: int = 0
    detail: dict = field(default_factory=dict)


class GuestStopped(Exception):
    """The guest ended the run on purpose (debug-exit port, a PV shutdown
    hypercall, Ctrl-A x): raised by whoever sees it, caught by the vCPU loop."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


class DebugStop(Exception):
    """A debugger's stop (ringvisor.gdb): raised by the engine between two
    guest instructions, it leaves the vCPU loop with the guest stopped there.
    `kind` is 'breakpoint', 'watch', 'step' or 'interrupt'; `address` the
    breakpoint's or the watched data's linear address; `access` 'read' or
    'write' for a watchpoint."""

    def __init__(self, kind: str, address: int | None = None, access: str | None = None):
        super().__init__(kind)
        self.kind, self.address, self.access = kind, address, access
