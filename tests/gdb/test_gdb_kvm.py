"""Debian's gdb against `ringvisor run --engine kvm --gdb`: KVM_SET_GUEST_DEBUG
(breakpoints, single steps, watchpoints through the debug registers). The
test kernel needs no paging, so it runs on PVM hosts too, where software
breakpoints become hardware ones (PVM cannot intercept int3 in guest ring-0
code)."""
from __future__ import annotations

import os
import re

import pytest

from test_gdb_ringos import ROOT, Run, gdb

HELLO = ROOT / "guests" / "tests" / "build" / "hello.elf"

pytestmark = pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK),
                                reason="/dev/kvm is not usable here")


def test_break_step_watch_and_detach_on_kvm(gdb_binary):
    run = Run(str(HELLO), "--engine", "kvm", "--technique", "hw", "--gdb-wait", engine=None)
    out = gdb(gdb_binary, run.port, HELLO, [
        "break puts", "continue", "stepi", "p $pc", "continue", "info registers eip",
        "delete", "watch *(int*)($esp-4)", "continue", "delete",
        "monitor info exits", "monitor technique", "detach"])
    status, console, err = run.finish()
    assert "Breakpoint 1, 0x00100070 in puts ()" in out, out
    assert "0x00100071 in puts ()" in out                 # one instruction, not past the breakpoint
    assert out.count("Breakpoint 1, 0x00100070 in puts ()") == 2   # continue left the breakpoint
    assert "Old value = " in out and "New value = " in out
    assert re.search(r"DEBUG\s+\d+", out)                 # KVM_EXIT_DEBUG counted as exits
    assert "kvm engine" in out
    assert "[Inferior 1 (Remote target) detached]" in out
    assert status == 0, err
    assert "hello from the ringvisor test kernel" in console and "mmap 0x00100000" in console
