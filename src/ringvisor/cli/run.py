"""`ringvisor run`: boot a guest, connect its console, report how it ended."""
from __future__ import annotations

import contextlib
import json
import os
import sys

from ringvisor.cli import consoles, stats_view
from ringvisor.cli.options import vm_config
from ringvisor.errors import ConfigError
from ringvisor.gdb.address import DEFAULT
from ringvisor.machine.trace import Trace
from ringvisor.vm import build_machine


HALT_REASONS = ("halted with interrupts disabled", "every CPU halted")


def run_guest(config, serial: str = "stdio", trace=None, gdb: str | None = None,
              gdb_wait: bool = False, debugcon=None):
    """Boot `config` with its console on `serial` (keyboard input reaches the
    UART, Ctrl-A x quits); the machine is torn down however the run ends.
    With `gdb` ([HOST:]PORT) a GDB stub serves the guest (docs/gdb.md);
    `debugcon` (a writable binary file) takes the debug console's bytes
    (ports 0xE9 and, with --bios, 0x402) apart from the serial console."""
    with consoles.open_console(serial) as console:
        machine = build_machine(config, console.write)
        try:
            machine.attach_trace(trace)
            if debugcon is not None:
                machine.debugcon.output = lambda data: (debugcon.write(data), debugcon.flush())
            console.on_quit = machine.request_quit
            console.attach(machine.uart)
            if gdb is not None:
                from ringvisor.gdb.attach import run_with_gdb
                return run_with_gdb(machine, config, gdb, gdb_wait)
            return machine.run()
        finally:
            machine.close()


@contextlib.contextmanager
def open_trace(path: str | None, limit: int):
    if path is None:
        yield None
        return
    if limit <= 0:
        raise ConfigError("--trace-limit must be a positive number of lines")
    if path == "-":
        yield Trace(sys.stderr, limit)
        return
    try:
        stream = open(path, "w")
    except OSError as e:
        raise ConfigError(f"cannot write the trace to {path}: {e.strerror}") from None
    with stream:
        yield Trace(stream, limit)


@contextlib.contextmanager
def open_debugcon(spec: str | None):
    """--debugcon file:PATH (QEMU's option, file form only): the debug
    console apart from the serial console. None: both share the console."""
    if spec is None or spec == "stdio":
        yield None
        return
    if not spec.startswith("file:") or len(spec) == 5:
        raise ConfigError(f"--debugcon {spec!r}: use stdio or file:PATH")
    try:
        stream = open(spec[5:], "wb")
    except OSError as e:
        raise ConfigError(f"cannot write the debug console to {spec[5:]}: {e.strerror}") from None
    with stream:
        yield stream


def command(args) -> int:
    config = vm_config(args)
    with open_trace(args.trace, args.trace_limit) as trace:
        gdb = args.gdb if args.gdb is not None or not args.gdb_wait else DEFAULT
        with open_debugcon(getattr(args, "debugcon", None)) as debugcon:
            result = run_guest(config, args.serial, trace, gdb, args.gdb_wait, debugcon)
    if config.bios or result.reason.startswith(HALT_REASONS):
        # A firmware (or a test ROM) ends by halting or resetting: say which.
        print(f"ringvisor: {result.reason} (status {result.status})", file=sys.stderr)
    if args.stats:
        stats_view.print_stats(result)
    if args.json:
        write_json(args.json, result)
    return result.status


def write_json(path: str, result) -> None:
    write_doc(path, {"status": result.status, "reason": result.reason,
                     "wall_seconds": result.wall_seconds, **result.stats})


def write_doc(path: str, doc: dict) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)      # never leave a half-written file behind
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror}") from None
