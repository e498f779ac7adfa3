"""Debian's own gdb, in batch mode, against the stub serving the fake target:
what a user types, and what gdb must then print. gdb reads the target
description (it would not know $cr3 otherwise) and the program's symbols."""
from __future__ import annotations

import re
import signal
import subprocess
import threading

GDB_TIMEOUT = 120


def run_gdb(gdb_binary, port, elf, commands, on_start=None, before=()) -> str:
    argv = [gdb_binary, "-batch", "-nx", "-ex", "set architecture i386"]
    for c in before:
        argv += ["-ex", c]
    argv += ["-ex", f"target remote 127.0.0.1:{port}"]
    for c in commands:
        argv += ["-ex", c]
    argv.append(str(elf))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    if on_start:
        on_start(proc)
    out, _ = proc.communicate(timeout=GDB_TIMEOUT)
    return out


def test_registers_memory_breakpoint_step_watch_monitor_detach(gdb_binary, stub, program_elf):
    out = run_gdb(gdb_binary, stub.port, program_elf, [
        "info registers",
        "p $cr0", "p/x $gdtr_limit",
        "x/2i $pc",
        "break loop",
        "continue",
        "p $ecx",
        "stepi",
        "x/wx &counter",
        "delete",
        "watch *(int*)&counter",
        "continue",
        "p $eax",
        "monitor info registers",
        "monitor technique",
        "detach",
    ])
    end = stub.finish()
    assert "0x00001000 in _start ()" in out
    assert re.search(r"eip\s+0x1000\s+0x1000 <_start>", out)
    assert re.search(r"esp\s+0x8000", out)
    assert re.search(r"cr0\s+0x11", out) and "gdtr_base" in out
    assert "$1 = 17" in out and "$2 = 0xffff" in out
    assert "mov    $0x0,%eax" in out
    assert "Breakpoint 1, 0x0000100a in loop ()" in out
    assert "$3 = 5" in out
    assert "0x0000100b in loop ()" in out
    assert re.search(r"0x2000(?: <counter>)?:\s+0x00000000", out)
    assert "Old value = 0" in out and "New value = 1" in out
    assert "0x00001010 in loop ()" in out                    # after the store retired
    assert "$4 = 1" in out
    assert "eax=00000001" in out and "CPL 0" in out
    assert "fake engine, no technique (tests)" in out
    assert "[Inferior 1 (Remote target) detached]" in out
    assert "warning" not in out.lower() and "error" not in out.lower(), out
    assert end.how == "detached"


def test_write_memory_hardware_breakpoint_read_watchpoint_and_exit(gdb_binary, stub, program_elf):
    out = run_gdb(gdb_binary, stub.port, program_elf, [
        "x/wx &limit",
        "set {int}&limit = 7",
        "set $edx = 16",
        "hbreak bump",
        "rwatch *(int*)&limit",
        "continue",
        "continue",
        "p $edx",
        "delete",
        "continue",
    ])
    end = stub.finish()
    assert re.search(r"0x2004(?: <limit>)?:\s+0x0000002a", out)
    assert "Hardware assisted breakpoint 1 at 0x101e" in out
    assert "Value = 7" in out and "0x00001018 in loop ()" in out
    assert "Breakpoint 1, 0x0000101e in bump ()" in out
    assert "$1 = 16" in out                                 # set by P, kept by the guest
    assert "exited with code 07" in out
    assert end.how == "exited" and end.stop.code == 7


def test_ctrl_c_stops_a_running_guest(gdb_binary, stub, program_elf, fake_target):
    def interrupt_when_running(proc):
        def wait():
            while fake_target.resumes == 0 and proc.poll() is None:
                threading.Event().wait(0.01)
            proc.send_signal(signal.SIGINT)            # what Ctrl-C at gdb's terminal does
        threading.Thread(target=wait, daemon=True).start()

    out = run_gdb(gdb_binary, stub.port, program_elf,
                  ["set $pc = spin", "continue", "p $pc", "kill"],
                  on_start=interrupt_when_running)
    end = stub.finish()
    assert "Program received signal SIGINT, Interrupt." in out
    assert "0x00001020 in spin ()" in out
    assert "[Inferior 1 (Remote target) killed]" in out
    assert end.how == "killed"


def test_unmapped_memory_is_an_error_in_gdb(gdb_binary, stub, program_elf):
    # gdb in the protocol's acknowledged mode this time (no QStartNoAckMode).
    out = run_gdb(gdb_binary, stub.port, program_elf, ["x/wx 0x4000", "p $eip", "detach"],
                  before=["set remote noack-packet off"])
    stub.finish()
    assert "Cannot access memory at address 0x4000" in out
    assert "<_start>" in out
