"""A virtual-8086 monitor as a test kernel (guests/tests/v86.c): entered by
IRET or by a task switch, the 8086 program's CLI/STI/INT n trap with #GP(0)
at IOPL 0 and are emulated by the kernel's monitor; at IOPL 3 they run, and
INT n reaches the monitor through DPL-3 gates; at both, the OUT to a port
the TSS does not grant traps (the I/O bitmap whatever IOPL is). The same
verdict line on
the native soft CPU, under hw (VMX non-root: v86 guests pass the VM-entry
checks of 26.3.1.2; the task switch is the monitor's emulation), and under
QEMU TCG when it is installed (a reference nobody here wrote). Under trap
and bt: test_v86_under_monitors.py."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from monitor_rig import run

COMMON = ("int21=34 int3=1 out80=1 result=0x0000d123 wrap=0x0000beef ds=0x00003000 "
          "es=0x00002fff null_ds=1 vm_frames=1 if=1 verdict=ok")
VERDICTS = {"iopl=0": f"v86 iopl=0 gp=38 cli=1 sti=1 {COMMON}",
            "iopl=3": f"v86 iopl=3 gp=1 cli=0 sti=0 {COMMON}"}
ENTRIES = [f"{entry} {iopl}" for entry in ("entry=iret", "entry=task") for iopl in VERDICTS]


def verdict(cmdline: str) -> str:
    return VERDICTS[cmdline.split()[1]]


@pytest.mark.parametrize("cmdline", ENTRIES)
@pytest.mark.parametrize("technique,paging", [("native", "ept"), ("hw", "ept"), ("hw", "shadow")])
def test_v86_monitor_kernel(test_kernels, technique, paging, cmdline):
    result, out = run(test_kernels / "v86.elf", cmdline, technique=technique, paging=paging)
    assert result.status == 0, out
    assert out[-2:] == ["v86: hello from virtual-8086 mode", verdict(cmdline)]


@pytest.mark.skipif(shutil.which("qemu-system-i386") is None, reason="QEMU not installed")
@pytest.mark.parametrize("cmdline", ENTRIES)
def test_qemu_prints_the_same_verdict(test_kernels, cmdline):
    proc = subprocess.run(
        ["qemu-system-i386", "-accel", "tcg", "-cpu", "pentium2", "-m", "64",
         "-kernel", str(test_kernels / "v86.elf"), "-append", cmdline, "-nographic",
         "-serial", "stdio", "-monitor", "none", "-display", "none", "-no-reboot",
         "-device", "isa-debug-exit,iobase=0xf4,iosize=1"],
        capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    lines = proc.stdout.decode(errors="replace").replace("\r", "").splitlines()
    assert proc.returncode == 1, lines              # isa-debug-exit: (0 << 1) | 1
    assert verdict(cmdline) in lines
