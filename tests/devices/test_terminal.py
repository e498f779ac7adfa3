import os
import select
import signal
import subprocess
import sys
import termios
import textwrap
import threading
import time

import pytest

from ringvisor.devices import terminal
from ringvisor.devices.terminal import PipeConsole, TerminalConsole
from ringvisor.devices.uart16550 import Uart16550

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src")


class FakeUart:
    def __init__(self, room=16):
        self.got = bytearray()
        self.room = room

    def rx_room(self):
        return self.room

    def receive(self, data):
        self.got += data
        return len(data)


def wait_for(cond, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


def read_all(fd, timeout=1.0):
    out = bytearray()
    while select.select([fd], [], [], timeout)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        timeout = 0.1
    return bytes(out)


@pytest.fixture
def pty():
    master, slave = os.openpty()
    yield master, slave
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


def is_raw(fd):
    lflag = termios.tcgetattr(fd)[3]
    return not lflag & (termios.ICANON | termios.ECHO | termios.ISIG)


def test_raw_mode_and_restore(pty):
    master, slave = pty
    before = termios.tcgetattr(slave)
    assert not is_raw(slave)
    with TerminalConsole(stdin_fd=slave, stdout_fd=slave) as con:
        assert con.raw and is_raw(slave)
    assert termios.tcgetattr(slave) == before


def test_restore_after_exception(pty):
    master, slave = pty
    before = termios.tcgetattr(slave)
    with pytest.raises(RuntimeError):
        with TerminalConsole(stdin_fd=slave, stdout_fd=slave):
            raise RuntimeError("guest crashed")
    assert termios.tcgetattr(slave) == before


def test_restore_is_idempotent(pty):
    master, slave = pty
    before = termios.tcgetattr(slave)
    con = TerminalConsole(stdin_fd=slave, stdout_fd=slave).open()
    con.restore()
    con.restore()
    con.close()
    con.close()
    assert termios.tcgetattr(slave) == before


def test_keys_reach_the_uart_and_ctrl_a_x_quits(pty):
    master, slave = pty
    quits = []
    uart = FakeUart()
    with TerminalConsole(stdin_fd=slave, stdout_fd=slave, on_quit=lambda: quits.append(1)) as con:
        con.attach(uart)
        os.write(master, b"ls\x03\r")           # Ctrl-C goes to the guest in raw mode
        assert wait_for(lambda: uart.got == b"ls\x03\r")
        os.write(master, b"\x01\x01")          # Ctrl-A Ctrl-A: one literal Ctrl-A
        assert wait_for(lambda: uart.got == b"ls\x03\r\x01")
        os.write(master, b"\x01x")
        assert wait_for(lambda: quits == [1])
        assert con.quit_requested
        os.write(master, b"\x01zq")            # unknown escape dropped, q passes
        assert wait_for(lambda: uart.got.endswith(b"\x01q"))
    assert uart.got == b"ls\x03\r\x01q"


def test_escape_split_across_reads(pty):
    master, slave = pty
    quits = []
    with TerminalConsole(stdin_fd=slave, stdout_fd=slave, on_quit=lambda: quits.append(1)) as con:
        con.attach(FakeUart())
        os.write(master, b"\x01")
        time.sleep(0.05)
        os.write(master, b"x")
        assert wait_for(lambda: quits == [1])


def test_help_line(pty):
    master, slave = pty
    with TerminalConsole(stdin_fd=slave, stdout_fd=slave) as con:
        con.attach(FakeUart())
        os.write(master, b"\x01h")
        assert b"C-a x" in read_all(master)


def test_output_lf_becomes_crlf_in_raw_mode(pty):
    master, slave = pty
    with TerminalConsole(stdin_fd=slave, stdout_fd=slave) as con:
        con.write(b"one\ntwo\r\nthree\r")
        con.write(b"\nfour\n")                 # CR at the end of the last write
        assert read_all(master) == b"one\r\ntwo\r\nthree\r\nfour\r\n"


def test_paste_is_flow_controlled_into_a_real_uart(pty):
    master, slave = pty
    uart = Uart16550()
    uart.io_write(2, 1, 0x01)                  # FIFO on
    data = bytes(range(32, 127)) * 3
    got = bytearray()
    with TerminalConsole(stdin_fd=slave, stdout_fd=slave) as con:
        con.attach(uart)
        os.write(master, data)

        def drain():
            while uart.io_read(5, 1) & 1:
                got.append(uart.io_read(0, 1))
            return len(got) == len(data)
        assert wait_for(drain, timeout=10)
    assert bytes(got) == data
    assert uart.stats.bytes_dropped == 0


def test_not_a_tty_means_no_raw_mode():
    in_r, in_w = os.pipe()
    r, w = os.pipe()
    try:
        with TerminalConsole(stdin_fd=in_r, stdout_fd=w) as con:
            assert not con.raw
            con.write(b"a\n")
        assert os.read(r, 10) == b"a\n"        # no CRLF when not in raw mode
    finally:
        for fd in (in_r, in_w, r, w):
            os.close(fd)


def test_sigterm_restores_terminal_in_a_child(pty):
    master, slave = pty
    before = termios.tcgetattr(slave)
    code = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {SRC!r})
        from ringvisor.devices.terminal import TerminalConsole
        con = TerminalConsole(stdin_fd={slave}, stdout_fd={slave}).open()
        sys.stdout.write("ready\\n"); sys.stdout.flush()
        time.sleep(30)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], pass_fds=(slave,),
                             stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"ready\n"
        assert is_raw(slave)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=10) == -signal.SIGTERM   # died of the signal
    finally:
        child.kill()
        child.wait()
    assert termios.tcgetattr(slave) == before


def test_atexit_restores_terminal_in_a_child(pty):
    master, slave = pty
    before = termios.tcgetattr(slave)
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {SRC!r})
        from ringvisor.devices.terminal import TerminalConsole
        TerminalConsole(stdin_fd={slave}, stdout_fd={slave}).open()
        sys.exit(3)       # never closed: atexit must restore
    """)
    assert subprocess.run([sys.executable, "-c", code], pass_fds=(slave,), timeout=10).returncode == 3
    assert termios.tcgetattr(slave) == before


# -- PipeConsole --------------------------------------------------------------------

def test_pipe_console_to_file(tmp_path):
    path = tmp_path / "serial.log"
    data = bytes(range(256)) * 100
    with PipeConsole(str(path)) as con:
        con.write(data[:1000])
        con.write(data[1000:])
    assert path.read_bytes() == data           # byte for byte, no CRLF games


def test_pipe_console_input_from_pipe():
    r, w = os.pipe()
    out_r, out_w = os.pipe()
    uart = FakeUart(room=3)
    try:
        con = PipeConsole(out_w, input_fd=r)
        con.attach(uart)
        os.write(w, b"\x01x hello")            # no escapes on a pipe
        os.close(w)
        w = None
        assert wait_for(lambda: uart.got == b"\x01x hello")
        con.close()
    finally:
        for fd in (r, w, out_r, out_w):
            if fd is not None:
                os.close(fd)


def test_output_survives_a_closed_reader():
    r, w = os.pipe()
    os.close(r)
    con = PipeConsole(w)
    con.write(b"nobody listens")               # EPIPE: quiet
    con.write(b"still quiet")
    assert con.out.closed
    os.close(w)


def test_partial_writes_and_eagain_lose_nothing():
    r, w = os.pipe()
    os.set_blocking(w, False)
    con = PipeConsole(w)
    data = os.urandom(1 << 18)                 # far more than a pipe buffer
    got = bytearray()

    def reader():
        while len(got) < len(data):
            got.extend(os.read(r, 65536))
    t = threading.Thread(target=reader)
    t.start()
    con.write(data)
    t.join(timeout=10)
    assert bytes(got) == data
    os.close(r)
    os.close(w)


def test_backlog_limit_counts_drops(monkeypatch):
    monkeypatch.setattr(terminal, "BACKLOG_LIMIT", 4)
    pump = terminal._InputPump(None, lambda d: d)
    pump._queue(b"abcdef")
    assert bytes(pump.backlog) == b"abcd" and pump.dropped == 2
    pump.stop()
