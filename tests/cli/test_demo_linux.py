"""`ringvisor demo --linux` without booting Linux (the boots themselves take
minutes; `make test-linux` covers them): what it says when Debian's kernel
is not fetched, its arguments, and how it reads a boot's console."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ringvisor.cli import demo_linux
from ringvisor.cli.demo_linux import Boot, guest_report, key_lines, verdict
from ringvisor.cli.main import build_parser


def ringvisor(*args, guests=None):
    env = {**os.environ, **({"RINGVISOR_GUESTS": str(guests)} if guests else {})}
    return subprocess.run([sys.executable, "-m", "ringvisor", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=env, timeout=60)


def test_without_the_kernel_one_line_says_make_linux_fetches_it(tmp_path):
    proc = ringvisor("demo", "--linux", guests=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "`make linux` downloads it" in proc.stderr


def test_technique_belongs_to_linux():
    proc = ringvisor("demo", "--technique", "trap")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "ringvisor: demo: --technique chooses the monitor of --linux; give --linux too"


def test_arguments():
    parser = build_parser()
    args = parser.parse_args(["demo", "--linux", "--technique", "trap"])
    assert args.linux and args.technique == "trap"
    args = parser.parse_args(["demo"])
    assert not args.linux and args.technique is None
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["demo", "--linux", "--technique", "native"])
    assert e.value.code == 2
    assert set(demo_linux.MINUTES) == {"native", *demo_linux.MONITORS}


# A native boot's console, abridged (Debian 12's linux-image-686 on the pc machine).
NATIVE = """\
[    0.000000] Linux version 6.1.0-50-686 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0)\r
[    0.000000] BIOS-provided physical RAM map:\r
[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable\r
[    0.000000] BIOS-e820: [mem 0x0000000000100000-0x0000000003ffffff] usable\r
[    0.000000] Kernel command line: console=ttyS0 acpi=off pci=off\r
[    0.010000] Memory: 49052K/65144K available (7532K kernel code)\r
[    0.420000] Run /init as init process\r
linux guest ready: Linux 6.1.0-50-686\r
model name\t: Pentium 75 - 200\r
flags\t\t: vme de pse tsc msr cx8 sep pge cmov\r
[    1.320044] reboot: Restarting system\r
"""


def boot(technique, text, status=0, reason="the guest reset the machine"):
    return Boot(technique, text, status, reason, 1.0, 1)


def test_key_lines_drop_timestamps_and_all_but_the_first_e820_range():
    assert key_lines(NATIVE) == [
        "Linux version 6.1.0-50-686 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0)",
        "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
        "Kernel command line: console=ttyS0 acpi=off pci=off",
        "Memory: 49052K/65144K available (7532K kernel code)",
        "Run /init as init process",
        "reboot: Restarting system"]


def test_the_guest_report_is_the_initramfs_lines_after_ready():
    assert guest_report(NATIVE) == ["linux guest ready: Linux 6.1.0-50-686", "model name\t: Pentium 75 - 200",
                                    "flags\t\t: vme de pse tsc msr cx8 sep pge cmov"]
    assert guest_report("[    0.1] Kernel panic - not syncing\n") == []


def test_verdict_same_and_different():
    other = NATIVE.replace("Kernel command line: console=ttyS0", "Kernel command line: console=ttyS0 reservetop=4M")
    assert verdict(boot("native", NATIVE), boot("bt", other)) == (True, [])
    hw = NATIVE.replace("cmov\r", "cmov hypervisor\r")
    same, diff = verdict(boot("native", NATIVE), boot("hw", hw))
    assert not same
    assert diff == ["- flags\t\t: vme de pse tsc msr cx8 sep pge cmov",
                    "+ flags\t\t: vme de pse tsc msr cx8 sep pge cmov hypervisor"]
    same, diff = verdict(boot("native", NATIVE), boot("trap", NATIVE.split("linux guest")[0], 1, "time limit"))
    assert not same and diff[-1] == "  (no ready line under trap: time limit)"
