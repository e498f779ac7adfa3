"""Stop replies: how a `Stop` from the target is told to gdb (`T`, `W`, `X`)."""
from __future__ import annotations

from ringvisor.gdb.registers import BY_NAME
from ringvisor.gdb.target import (BreakpointHit, Crashed, Exited, Interrupted, Stepped,
                                  Stop, WatchpointHit)

SIGINT, SIGTRAP, SIGSEGV = 2, 5, 11
THREAD = 1          # the one CPU, as gdb's thread 1


def stop_reply(stop: Stop | None, eip: int | None, software: frozenset[int],
               hardware: frozenset[int], client_features: frozenset[str]) -> bytes:
    """The reply for `stop`; `eip` (None once the guest is gone) is expedited
    so gdb need not ask for it. swbreak/hwbreak are sent only to a gdb that
    said it understands them."""
    if isinstance(stop, Exited):
        return b"W%02x" % (stop.code & 0xFF)
    if isinstance(stop, Crashed):
        return b"X%02x" % SIGSEGV
    signal = SIGINT if isinstance(stop, Interrupted) else SIGTRAP
    reasons = []
    if isinstance(stop, BreakpointHit):
        if stop.address in software and "swbreak" in client_features:
            reasons.append("swbreak:")
        elif stop.address in hardware and "hwbreak" in client_features:
            reasons.append("hwbreak:")
    elif isinstance(stop, WatchpointHit):
        reasons.append(f"{stop.kind.value}:{stop.address:x}")
    if eip is not None:
        reasons.append(f"{BY_NAME['eip']:02x}:{eip.to_bytes(4, 'little').hex()}")
    reasons.append(f"thread:{THREAD:x}")
    return b"T%02x" % signal + "".join(r + ";" for r in reasons).encode()


def describe(stop: Stop | None) -> str:
    """A few words for logs and `monitor`."""
    match stop:
        case BreakpointHit(address=a):
            return f"breakpoint at {a:#010x}"
        case WatchpointHit(address=a, kind=k):
            return f"{k.name.lower()} watchpoint hit at {a:#010x}"
        case Stepped():
            return "single step"
        case Interrupted():
            return "interrupted"
        case Exited(code=c):
            return f"guest exited with status {c}"
        case Crashed(message=m):
            return f"guest crashed: {m}"
    return "stopped"
