"""Debian 12's own i386 kernel booting on the soft engine (issue 13). It takes
a minute or more, so `make test-linux` runs it (after `make linux`), not
`make test`.

One boot serves every test here; it stops at the first of: the guest's
reset (the initramfs ends with `reboot -f`), a kernel panic, the kernel
giving up on its FPU, or the time limit.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "guests" / "linux" / "build"
LIMIT_S = 1200
STOP_MARKS = (b"Kernel panic", b"x86/fpu: Giving up")

pytestmark = [
    pytest.mark.skipif(os.environ.get("RINGVISOR_LINUX_BOOT") != "1",
                       reason="booting Linux takes minutes: `make test-linux` runs these"),
    pytest.mark.skipif(not (BUILD / "vmlinuz").is_file() or not (BUILD / "initrd.cpio.gz").is_file(),
                       reason="Debian's kernel is not fetched: `make linux` downloads it through apt"),
]


class Boot:
    def __init__(self):
        from ringvisor.errors import RingvisorError
        from ringvisor.boot import linux
        from ringvisor.vm import VmConfig, build_machine
        self.console = bytearray()
        config = VmConfig(kernel=str(BUILD / "vmlinuz"), engine="soft", technique="native",
                          modules=(str(BUILD / "initrd.cpio.gz"),), image_format="linux",
                          timeout=LIMIT_S, cmdline="", memory=64 << 20)
        self.machine = build_machine(config, self._write)
        self.default_cmdline = linux.command_line("", apic=True)   # the pc machine (native)
        start = time.monotonic()
        try:
            result = self.machine.run()
            self.status, self.reason = result.status, result.reason
        except RingvisorError as e:
            self.status, self.reason = e.exit_code, str(e).splitlines()[0]
        finally:
            self.machine.close()
        self.wall = time.monotonic() - start
        self.instructions = self.machine.platform.engine.instructions
        self.text = self.console.decode(errors="replace")

    def _write(self, data: bytes) -> None:
        self.console.extend(data)
        tail = bytes(self.console[-64:])
        if any(mark in tail for mark in STOP_MARKS):
            self.machine.request_quit()


@pytest.fixture(scope="module")
def boot():
    b = Boot()
    print(f"\nlinux boot: {b.instructions:,} instructions in {b.wall:.0f} s; ended: {b.reason}")
    return b


def test_the_kernel_starts_and_reads_what_the_loader_gave_it(boot):
    assert "Linux version 6.1." in boot.text
    assert f"Kernel command line: {boot.default_cmdline}" in boot.text
    assert "printk: console [ttyS0] enabled" in boot.text
    # The e820 map the loader wrote, as the kernel prints it.
    assert "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable" in boot.text
    assert "BIOS-e820: [mem 0x0000000000100000-0x0000000003ffffff] usable" in boot.text
    assert "RAMDISK: [mem 0x03" in boot.text


def test_the_soft_platform_answers_every_port_the_kernel_touches(boot):
    assert "Unable to read current time from RTC" not in boot.text
    assert not boot.machine.ports.unknown


def test_the_kernel_reaches_the_initramfs_and_ends_the_run_cleanly(boot):
    assert "linux guest ready: Linux 6.1." in boot.text
    assert boot.status == 0 and "reset" in boot.reason
