"""Where the guest's console goes: the host terminal (raw mode, Ctrl-A x to
quit), standard output when it is not a terminal, or a file."""
from __future__ import annotations

import contextlib
import os
import sys

from ringvisor.errors import ConfigError


class FileConsole:
    """Console output to a file descriptor; no input."""

    def __init__(self, fd: int, close: bool):
        self.fd, self._close, self.on_quit = fd, close, None

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                continue
            except BrokenPipeError:
                return                 # the reader went away; the guest keeps running
            view = view[n:]

    def attach(self, uart) -> None:
        pass

    def close(self) -> None:
        if self._close:
            os.close(self.fd)


@contextlib.contextmanager
def open_console(spec: str):
    if spec == "stdio":
        if sys.stdin.isatty() and sys.stdout.isatty():
            from ringvisor.devices.terminal import TerminalConsole
            with TerminalConsole() as console:
                yield console
            return
        console = FileConsole(sys.stdout.fileno(), close=False)
    elif spec.startswith("file:") and len(spec) > 5:
        try:
            fd = os.open(spec[5:], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise ConfigError(f"cannot open serial output {spec[5:]!r}: {e.strerror}") from None
        console = FileConsole(fd, close=True)
    else:
        raise ConfigError(f"--serial {spec!r}: use stdio or file:PATH")
    try:
        yield console
    finally:
        console.close()
