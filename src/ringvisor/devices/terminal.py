"""The host side of the guest console: where UART output goes, where its input
comes from.

- `TerminalConsole`: stdin is a terminal. It is put in raw mode (every key,
  Ctrl-C included, goes to the guest) and restored on every way out: the
  context manager, `close()`, atexit, and SIGTERM/SIGHUP (restore, then die of
  the signal as before). QEMU-style escapes: Ctrl-A x quits (calls
  `on_quit()`), Ctrl-A h prints a help line, Ctrl-A Ctrl-A sends one Ctrl-A;
  any other key after Ctrl-A is dropped. In raw mode the terminal no longer
  turns LF into CRLF, so output does it (for a bare LF only, since serial
  drivers often send CRLF themselves).
- `PipeConsole`: no terminal (CI, pipes, `--serial file:PATH`): output to a
  file descriptor or a file, byte for byte; optional input from a pipe, with
  no escape processing.

Both write with os.write, unbuffered, finishing partial writes and waiting
out EAGAIN; a reader that went away (EPIPE, EIO on a hung-up terminal) makes
output stop quietly, never a traceback in the guest's I/O path.

Input is fed to the UART (`attach(uart)`) by a daemon thread. Host input can
outrun a guest that reads 16 bytes per interrupt (a paste), so the thread
keeps a backlog and feeds only what the UART has room for, like hardware
flow control; bytes past `BACKLOG_LIMIT` are dropped and counted.
"""
from __future__ import annotations

import atexit
import errno
import os
import select
import signal
import termios
import threading
import tty
from typing import Callable

CTRL_A = 0x01
HELP = (b"\r\nC-a h    print this help\r\nC-a x    exit ringvisor\r\n"
        b"C-a C-a  send C-a to the guest\r\n")
BACKLOG_LIMIT = 1 << 20
FEED_POLL_S = 0.01          # retry interval while the UART's FIFO is full
IDLE_POLL_S = 0.2
GONE = (errno.EPIPE, errno.EIO, errno.ENXIO, errno.EBADF)


class _Output:
    """Unbuffered, complete writes to one fd; quiet when the reader is gone."""

    def __init__(self, fd: int):
        self.fd = fd
        self.closed = False
        self.bytes_written = 0
        self.lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self.lock:
            view = memoryview(data)
            while view and not self.closed:
                try:
                    n = os.write(self.fd, view)
                except (BlockingIOError, InterruptedError):
                    select.select([], [self.fd], [], 1.0)
                    continue
                except OSError as e:
                    if e.errno in GONE:
                        self.closed = True      # nobody reads: drop, keep the guest going
                        return
                    raise
                self.bytes_written += n
                view = view[n:]


class _InputPump:
    """A daemon thread: reads an fd, filters it, feeds the UART as room allows."""

    def __init__(self, fd: int | None, filter: Callable[[bytes], bytes]):
        self.fd = fd
        self.filter = filter
        self.uart = None
        self.backlog = bytearray()
        self.dropped = 0
        self.lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        self._stop = False
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="console-input", daemon=True)
            self.thread.start()

    def attach(self, uart) -> None:
        with self.lock:
            self.uart = uart
        self.start()
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"w")
        except OSError:
            pass

    def stop(self) -> None:
        self._stop = True
        self._wake()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=2.0)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _feed(self) -> None:
        with self.lock:
            if not self.backlog or self.uart is None:
                return
            room = self.uart.rx_room()
            if room > 0:
                chunk = bytes(self.backlog[:room])
                taken = self.uart.receive(chunk)
                del self.backlog[:max(taken, 0) if taken is not None else len(chunk)]

    def _queue(self, data: bytes) -> None:
        with self.lock:
            space = BACKLOG_LIMIT - len(self.backlog)
            self.backlog += data[:space]
            self.dropped += max(0, len(data) - space)

    def _run(self) -> None:
        reading = self.fd is not None
        while not self._stop:
            fds = [self._wake_r] + ([self.fd] if reading else [])
            timeout = FEED_POLL_S if self.backlog else IDLE_POLL_S
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
            except (OSError, ValueError):
                return
            if self._wake_r in ready:
                try:
                    os.read(self._wake_r, 512)
                except OSError:
                    return
            if reading and self.fd in ready:
                try:
                    data = os.read(self.fd, 4096)
                except (BlockingIOError, InterruptedError):
                    data = None
                except OSError:
                    data = b""
                if data == b"":
                    reading = False             # EOF: keep feeding what we have
                elif data:
                    self._queue(self.filter(data))
            if self._stop:
                return
            self._feed()


class TerminalConsole:
    def __init__(self, stdin_fd: int = 0, stdout_fd: int = 1,
                 on_quit: Callable[[], None] | None = None):
        self.stdin_fd, self.stdout_fd = stdin_fd, stdout_fd
        self.on_quit = on_quit
        self.out = _Output(stdout_fd)
        self.input = _InputPump(stdin_fd, self._filter)
        self._saved: list | None = None
        self._escape = False
        self._last_byte = 0
        self._old_handlers: dict[int, object] = {}
        self.quit_requested = False

    # -- raw mode and its restoration ----------------------------------------------
    def open(self) -> "TerminalConsole":
        if os.isatty(self.stdin_fd) and self._saved is None:
            self._saved = termios.tcgetattr(self.stdin_fd)
            atexit.register(self.restore)
            self._install_signal_handlers()
            tty.setraw(self.stdin_fd, termios.TCSADRAIN)
        self.input.start()
        return self

    @property
    def raw(self) -> bool:
        return self._saved is not None

    def restore(self) -> None:
        """Give the terminal back as we found it. Idempotent, and safe to call
        from a signal handler or atexit."""
        saved, self._saved = self._saved, None
        if saved is not None:
            try:
                termios.tcsetattr(self.stdin_fd, termios.TCSADRAIN, saved)
            except (termios.error, OSError):
                pass                            # the terminal is gone

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return                              # only the main thread may
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def _uninstall_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        self._old_handlers.clear()

    def _on_signal(self, signum, frame) -> None:
        self.restore()
        old = self._old_handlers.get(signum, signal.SIG_DFL)
        self._uninstall_signal_handlers()
        if callable(old):
            old(signum, frame)
        else:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)        # die of the signal, as before

    def close(self) -> None:
        self.input.stop()
        self.restore()
        self._uninstall_signal_handlers()
        atexit.unregister(self.restore)

    def __enter__(self) -> "TerminalConsole":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the console interface ------------------------------------------------------------
    def attach(self, uart) -> None:
        """Send keyboard input to `uart` (anything with rx_room/receive)."""
        self.input.attach(uart)

    def write(self, data: bytes) -> None:
        if self.raw and os.isatty(self.stdout_fd):
            data = self._crlf(data)
        self.out.write(data)

    def _crlf(self, data: bytes) -> bytes:
        if b"\n" in data:
            out = bytearray()
            prev = self._last_byte
            for b in data:
                if b == 0x0A and prev != 0x0D:
                    out.append(0x0D)
                out.append(b)
                prev = b
            data = bytes(out)
        if data:
            self._last_byte = data[-1]
        return data

    # -- escapes ---------------------------------------------------------------------------
    def _filter(self, data: bytes) -> bytes:
        out = bytearray()
        for b in data:
            if self._escape:
                self._escape = False
                if b == CTRL_A:
                    out.append(CTRL_A)
                elif b in (ord("x"), ord("X")):
                    self.quit_requested = True
                    if self.on_quit:
                        self.on_quit()
                elif b in (ord("h"), ord("H"), ord("?")):
                    self.out.write(HELP)
            elif b == CTRL_A:
                self._escape = True
            else:
                out.append(b)
        return bytes(out)


class PipeConsole:
    """Console without a terminal: `output` is an fd or a file path; `input_fd`
    (optional) is read as raw bytes for the guest."""

    def __init__(self, output: int | str = 1, input_fd: int | None = None,
                 on_quit: Callable[[], None] | None = None):
        if isinstance(output, str):
            self.fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            self._owns_fd = True
        else:
            self.fd, self._owns_fd = output, False
        self.on_quit = on_quit                  # no escapes here; kept for symmetry
        self.out = _Output(self.fd)
        self.input = _InputPump(input_fd, lambda data: data)
        self._closed = False

    def attach(self, uart) -> None:
        self.input.attach(uart)

    def write(self, data: bytes) -> None:
        self.out.write(data)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.input.stop()
        if self._owns_fd:
            try:
                os.fsync(self.fd)               # the file is complete when we return
            except OSError:
                pass
            os.close(self.fd)

    def __enter__(self) -> "PipeConsole":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
