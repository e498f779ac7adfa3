"""`ringvisor run` on the kvm engine with the test kernels: output, exit
status, statistics, and the error paths (one line, non-zero, no traceback)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.kvm


def ringvisor(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "ringvisor", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def assert_one_line_error(proc, code, pattern):
    import re
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(pattern, proc.stderr.splitlines()[0]), proc.stderr


def test_hello_prints_its_boot_information_and_exits_with_its_status(test_kernels):
    proc = ringvisor("run", str(test_kernels / "hello.elf"), "--cmdline", "status=5 x=y", "--memory", "32M")
    assert proc.returncode == 5, proc.stderr
    lines = proc.stdout.replace("\r", "").splitlines()
    assert lines[0] == "hello from the ringvisor test kernel"
    assert "magic 0x2badb002" in lines and "cmdline hello.elf status=5 x=y" in lines
    assert "mem_lower 639 KiB, mem_upper 31744 KiB" in lines
    assert "mmap 0x00100000 0x01f00000 type 1" in lines


def test_multiboot_modules_reach_the_guest(test_kernels, tmp_path):
    mod = tmp_path / "initrd"
    mod.write_bytes(b"Zmodule body")
    proc = ringvisor("run", str(test_kernels / "hello.elf"), "--module", f"{mod} arg1")
    assert proc.returncode == 0, proc.stderr
    assert f"module {mod} arg1 size 12 first Z" in proc.stdout.replace("\r", "")


@pytest.mark.parametrize("ring", [0, 3])
def test_n_port_writes_make_exactly_n_port_exits(test_kernels, tmp_path, ring):
    n = 2000
    stats = tmp_path / "stats.json"
    proc = ringvisor("run", str(test_kernels / "portloop.elf"), "--cmdline", f"n={n} ring={ring} port=0x99",
                     "--json", str(stats))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(stats.read_text())
    ports = {p["port"]: p for p in doc["ports"]}
    assert ports[0x99]["writes"] == n and ports[0xF4]["writes"] == 1
    assert doc["userspace_exits"]["IO"] == sum(p["reads"] + p["writes"] for p in doc["ports"])
    assert doc["kernel"]["vcpu"]["exits"] >= n                  # the host kernel saw them too
    assert doc["backend"]["name"] in ("PVM", "VT-x", "AMD-V", "unknown")
    assert {"address": 0x99, "access": "write", "bus": "port", "count": n} in doc["unknown_accesses"]


def test_debugcon_writes_are_coalesced_by_the_host_kernel(test_kernels, tmp_path):
    n = 5000
    stats, serial = tmp_path / "stats.json", tmp_path / "console.txt"
    proc = ringvisor("run", str(test_kernels / "portloop.elf"), "--cmdline", f"n={n} ring=3 port=0xe9",
                     "--json", str(stats), "--serial", f"file:{serial}")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(stats.read_text())
    assert serial.read_bytes() == b"x" * n                       # every byte arrives, in order
    assert doc["coalesced_writes"] > 0
    assert doc["userspace_exits"]["IO"] < n // 10                # most writes never left the kernel


def test_stats_table_names_the_backend(test_kernels):
    proc = ringvisor("run", str(test_kernels / "portloop.elf"), "--cmdline", "n=10 port=0x99", "--stats")
    assert proc.returncode == 0
    assert "backend:" in proc.stderr and "exits to ringvisor" in proc.stderr and "0x0099" in proc.stderr


def test_triple_fault_reports_the_guest_state(test_kernels):
    proc = ringvisor("run", str(test_kernels / "crash.elf"), "--cmdline", "how=1")
    assert_one_line_error(proc, 4, "triple fault|internal error")
    assert "eip=" in proc.stderr and "cr0=" in proc.stderr


def test_halt_with_interrupts_off_is_detected_not_hung(test_kernels):
    proc = ringvisor("run", str(test_kernels / "crash.elf"), "--cmdline", "how=2")
    assert_one_line_error(proc, 4, r"halted with interrupts disabled \(cli; hlt\)")


def test_a_spinning_guest_is_stopped_by_the_timeout(test_kernels):
    proc = ringvisor("run", str(test_kernels / "crash.elf"), "--cmdline", "how=3", "--timeout", "1.5")
    assert_one_line_error(proc, 4, r"did not finish within 1.5 s")
    assert "protected mode, CPL 0" in proc.stderr


def test_an_instruction_the_host_cannot_run_is_reported_with_its_bytes(test_kernels):
    proc = ringvisor("run", str(test_kernels / "crash.elf"), "--cmdline", "how=4")
    # PVM's ring-0 emulator lacks int3 (an internal error with the bytes);
    # VT-x/AMD-V run it: with no IDT that is a triple fault.
    assert_one_line_error(proc, 4, "emulation failure|triple fault")
    assert "int3" in proc.stderr.lower() or "triple fault" in proc.stderr


def test_json_to_an_unwritable_place_is_one_line(test_kernels):
    proc = ringvisor("run", str(test_kernels / "hello.elf"), "--json", "/nonexistent/dir/out.json")
    assert_one_line_error(proc, 2, "cannot write /nonexistent/dir/out.json")


def test_a_long_mode_guest_is_reported_in_64_bits(test_kernels):
    """guests/tests/longmode.c enters IA-32e mode and triple-faults on UD2:
    the report has the 64-bit registers and disassembles the code as 64-bit,
    not a truncated 32-bit view (issue 16)."""
    proc = ringvisor("run", str(test_kernels / "longmode.elf"))
    assert_one_line_error(proc, 4, "triple fault|internal error")
    lines = proc.stderr.splitlines()
    assert lines[1] == "  long mode (IA-32e), 64-bit mode, CPL 0"
    assert "rax=1122334455667788" in lines[2] and "rcx=1122334455667788" in lines[2]
    assert "r15=8877665544332211" in lines[5]
    assert lines[-1].endswith("ud2    [0f 0b]")
