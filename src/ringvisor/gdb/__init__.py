"""A GDB remote stub: debug a guest with gdb, as QEMU's `-s -S` (docs/gdb.md).

`GdbServer` listens and serves sessions; a `Target` (ringvisor.gdb.target) is
what an engine and its monitor implement for it; `parse_address` reads
`--gdb [HOST:]PORT`.
"""
from ringvisor.gdb.address import DEFAULT, parse_address
from ringvisor.gdb.server import GdbServer
from ringvisor.gdb.session import Session, SessionEnd
from ringvisor.gdb.target import (BreakpointHit, Crashed, Exited, Interrupted, MemoryFault,
                                  Stepped, Stop, Target, TargetError, Watchpoint,
                                  WatchpointHit, WatchKind)

__all__ = ["DEFAULT", "parse_address", "GdbServer", "Session", "SessionEnd", "Target",
           "MemoryFault", "TargetError", "Watchpoint", "WatchKind", "Stop", "BreakpointHit",
           "WatchpointHit", "Stepped", "Interrupted", "Exited", "Crashed"]
