"""`ringvisor run --gdb`: the run, with a GDB stub serving the guest.

With `--gdb-wait` the guest waits before its first instruction until gdb has
connected (QEMU's -S); otherwise it runs, and gdb may connect at any time:
the guest stops where it is and the session begins (QEMU's -s). After gdb
detaches (or goes away) the guest runs on at full speed and another gdb may
connect; when gdb kills the guest the run ends as a stopped guest (exit 4).
"""
from __future__ import annotations

from ringvisor.errors import GuestCrashed
from ringvisor.gdb.address import parse_address
from ringvisor.gdb.server import GdbServer
from ringvisor.gdb.target import Crashed, Exited


def make_target(machine, config):
    """The target for this run's engine and technique."""
    if config.engine == "kvm":
        from ringvisor.gdb.kvm_target import KvmTarget
        return KvmTarget(machine, config.technique)
    from ringvisor.gdb.soft_target import SoftTarget
    return SoftTarget(machine, config.technique)


def run_with_gdb(machine, config, address: str, wait: bool):
    host, port = parse_address(address)
    target = make_target(machine, config)
    server = GdbServer(target, host, port)
    server.listen()
    if getattr(target, "int3_refused", False):
        from ringvisor.gdb.kvm_target import PVM_INT3
        server.log(f"gdb: {PVM_INT3} (four at most, watchpoints included)")
    try:
        if wait:
            server.log("waiting for gdb before the guest's first instruction (--gdb-wait)")
            end = server.serve()
        else:
            server.accept_in_background(target.interrupt)
            end = None
        while True:
            if end is not None:
                if end.how == "killed":
                    raise GuestCrashed("gdb killed the guest")
                if end.how in ("exited", "crashed"):
                    return _ended(target)
                target.detach()                        # detached or went away: run on
                server.accept_in_background(target.interrupt)
                end = None
            stop = target.resume(step=False)
            if isinstance(stop, (Exited, Crashed)):
                return _ended(target)
            if server.client_waiting:                  # the stop is gdb's arrival
                end = server.serve()
    finally:
        server.close()


def _ended(target):
    if target.crash is not None:
        raise target.crash
    return target.result
