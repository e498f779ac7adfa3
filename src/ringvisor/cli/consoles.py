"""Where the guest's console goes: the host terminal (raw mode, Ctrl-A x to
quit), standard output when it is not a terminal, or a file."""
from __future__ import annotations

import contextlib
import sys

from ringvisor.devices.terminal import PipeConsole, TerminalConsole
from ringvisor.errors import ConfigError


@contextlib.contextmanager
def open_console(spec: str):
    if spec == "stdio":
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
        console = TerminalConsole() if interactive else PipeConsole(sys.stdout.fileno())
    elif spec.startswith("file:") and len(spec) > 5:
        try:
            console = PipeConsole(spec[5:])
        except OSError as e:
            raise ConfigError(f"cannot open serial output {spec[5:]!r}: {e.strerror}") from None
    else:
        raise ConfigError(f"--serial {spec!r}: use stdio or file:PATH")
    with console:
        yield console
