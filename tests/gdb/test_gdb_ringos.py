"""Debian's gdb in batch mode against `ringvisor run --gdb`, debugging the
bundled guest OS (ringos, whose ELF has symbols) on the soft engine under
native, trap and bt (and pv with its own kernel): what a user types, and what
gdb and the run must then print. Also what a misbehaving client does to a
run: nothing."""
from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RINGOS = ROOT / "guests" / "os" / "build" / "ringos.elf"
RINGOS_PV = ROOT / "guests" / "os" / "build" / "ringos-pv.elf"
TIMEOUT = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Run:
    """`ringvisor run ... --gdb 127.0.0.1:PORT` in the background."""

    def __init__(self, *args: str, engine: str | None = "soft"):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ringvisor", "run", *(["--engine", engine] if engine else []), *args,
             "--gdb", f"127.0.0.1:{self.port}", "--timeout", "100"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        self._wait_listening()

    def _wait_listening(self) -> None:
        """Until the stub's first line (a probing connection would be a client)."""
        self.first = self.proc.stderr.readline()
        if "gdb stub listening on" not in self.first:
            raise AssertionError(f"ringvisor did not listen: {self.first}{self.proc.communicate()}")

    def finish(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=TIMEOUT)
        return self.proc.returncode, out, self.first + err


def gdb(gdb_binary: str, port: int, elf: Path, commands: list[str]) -> str:
    # A loaded machine may take a while to stop a running guest for gdb's first packet.
    argv = [gdb_binary, "-batch", "-nx", "-ex", "set remotetimeout 30",
            "-ex", f"target remote 127.0.0.1:{port}"]
    for c in commands:
        argv += ["-ex", c]
    argv.append(str(elf))
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT).stdout


SESSION = [
    "break kmain",
    "continue",
    "info registers",
    "stepi",
    "x/wx &ticks",
    "delete",
    "break sched_tick",
    "continue",
    "watch *(int*)&ticks",
    "continue",
    "delete",
    "break console_write",           # by now translated under bt: its copy must be dropped
    "continue",
    "p *(int*)&ticks",
    "monitor info registers",
    "monitor info traps",
    "monitor technique",
    "delete",
    "detach",
]


@pytest.mark.parametrize("technique", ["native", "trap", "bt", "pv", "hw", "hw-shadow"])
def test_break_step_watch_detach_and_the_guest_finishes(gdb_binary, technique):
    elf = RINGOS_PV if technique == "pv" else RINGOS
    paging = ("--paging", "shadow") if technique == "hw-shadow" else ()
    technique = technique.split("-")[0]
    run = Run("--technique", technique, *paging, "--gdb-wait")
    out = gdb(gdb_binary, run.port, elf, SESSION)
    status, console, err = run.finish()
    assert "in _start ()" in out                                  # stopped before the first instruction
    assert re.search(r"Breakpoint 1, 0x[0-9a-f]+ in kmain \(\)", out), out
    assert re.search(r"eip\s+0x[0-9a-f]+\s+0x[0-9a-f]+ <kmain\+\d+>", out)
    cs = re.search(r"cs\s+0x([0-9a-f]+)", out).group(1)
    assert int(cs, 16) & 3 == (1 if technique == "pv" else 0)    # the guest's CPL, not the real ring
    assert re.search(r"0x[0-9a-f]+ in kmain \(\)\n", out)        # the step stayed in kmain
    assert re.search(r"0x[0-9a-f]+ <ticks>:\s+0x00000000", out)
    assert "Old value = 0" in out and "New value = 1" in out
    assert re.search(r"Breakpoint 2, 0x[0-9a-f]+ in sched_tick \(\)", out), out
    assert re.search(r"0x[0-9a-f]+ in sched_tick \(\)\n", out)   # after the store retired
    assert re.search(r"Breakpoint 4, 0x[0-9a-f]+ in \w*console_write \(\)", out), out
    assert re.search(r"\$1 = [1-9]", out)
    assert ("CPL 1" if technique == "pv" else "CPL 0") in out and "paging on" in out
    assert f"--technique {technique}" in out
    if technique in ("trap", "bt", "pv"):
        assert re.search(r"traps\s+[\d,]+", out)
    elif technique == "hw":
        assert re.search(r"exits_by_reason\.io_instruction\s+[\d,]+", out), out   # VM exits
    else:
        assert "no monitor counters" in out
    assert "[Inferior 1 (Remote target) detached]" in out
    assert not re.search(r"\berror\b", out, re.I), out          # (counters such as x87_errors_as_ferr are no error)
    assert status == 0, err
    assert "ringos: exit status 0" in console and "tasks done" in console
    assert "gdb detached; the guest runs on" in err


def test_attach_to_a_running_guest_and_detach(gdb_binary):
    run = Run("--technique", "bt", "--workload", "compute", "--cmdline", "iters=100")
    banner = run.proc.stdout.readline()               # the guest runs
    out = gdb(gdb_binary, run.port, RINGOS, ["p $pc", "monitor info exits", "detach"])
    status, console, err = run.finish()
    console = banner + console
    assert re.search(r"\$1 = \(void \(\*\)\(\)\) 0x[0-9a-f]+", out), (out, err)
    assert "guest instructions:" in out
    assert "[Inferior 1 (Remote target) detached]" in out
    assert status == 0 and "ringos: exit status 0" in console


def test_kill_ends_the_run_as_a_stopped_guest(gdb_binary):
    run = Run("--technique", "trap", "--gdb-wait")
    out = gdb(gdb_binary, run.port, RINGOS, ["break kmain", "continue", "kill"])
    status, console, err = run.finish()
    assert "[Inferior 1 (Remote target) killed]" in out
    assert status == 4
    assert err.strip().splitlines()[-1] == "ringvisor: gdb killed the guest"
    assert "Traceback" not in err


def test_malformed_packets_and_a_vanishing_client_never_crash_the_run():
    run = Run("--technique", "native", "--gdb-wait")
    with socket.create_connection(("127.0.0.1", run.port)) as s:
        s.sendall(b"$garbage#00")                # a bad checksum: NAKed
        s.sendall(b"$m zz,qq#" + b"%02x" % (sum(b"m zz,qq") & 0xFF))
        s.sendall(b"+$Z9,1,1#" + b"%02x" % (sum(b"Z9,1,1") & 0xFF))
        s.sendall(b"\x03\x03$c")                  # Ctrl-C while stopped, then half a packet
        time.sleep(0.3)
        reply = s.recv(4096)
    status, console, err = run.finish()
    assert reply.startswith(b"-")                 # the bad checksum was refused
    assert b"$E22#" in reply                      # the malformed m
    assert status == 0 and "ringos: exit status 0" in console
    assert "gdb went away without detaching" in err
    assert "Traceback" not in err


def test_a_bad_address_is_one_line_and_exit_2():
    result = subprocess.run([sys.executable, "-m", "ringvisor", "run", "--engine", "soft",
                             "--gdb", "localhost:99999"], cwd=ROOT, capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 2
    assert result.stderr.strip() == "ringvisor: --gdb 'localhost:99999': the port must be a number " \
                                    "from 1 to 65535"



def test_ctrl_c_in_gdb_stops_the_running_guest(gdb_binary):
    run = Run("--technique", "trap", "--workload", "compute", "--cmdline", "iters=100", "--gdb-wait")
    argv = [gdb_binary, "-batch", "-nx", "-ex", "set remotetimeout 30",
            "-ex", f"target remote 127.0.0.1:{run.port}", "-ex", "continue",
            "-ex", "monitor info registers", "-ex", "detach", str(RINGOS)]
    gdb_proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    banner = run.proc.stdout.readline()               # the guest prints: gdb has said continue
    time.sleep(0.3)
    gdb_proc.send_signal(signal.SIGINT)               # what Ctrl-C at gdb's terminal does
    out, _ = gdb_proc.communicate(timeout=TIMEOUT)
    status, console, err = run.finish()
    console = banner + console
    assert "Program received signal SIGINT, Interrupt." in out, out
    assert "CPL 0" in out or "CPL 3" in out
    assert "[Inferior 1 (Remote target) detached]" in out
    assert status == 0 and "ringos: exit status 0" in console
