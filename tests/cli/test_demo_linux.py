"""`ringvisor demo --linux` without booting Linux (the boots themselves take
minutes; `make test-linux` covers them): what it says when Debian's kernel
is not fetched, its arguments, and how it reads a boot's console."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

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


def _boot_tests():
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "boot" / "test_linux.py"
    spec = importlib.util.spec_from_file_location("linux_loader_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_linux(tmp_path):
    """A vmlinux (tests/boot/test_linux.py's shape) whose startup code prints
    a ready line and a model name on COM1 and resets the PC through the
    i8042, as Debian's kernel and initramfs end: the demo's whole path in
    well under a second of guest time."""
    vmlinux = _boot_tests().vmlinux
    entry = 0x1000000
    message = b"[    0.000000] Linux version 6.1.0-test\nlinux guest ready: Linux 6.1.0-test\nmodel name\t: tiny\n\0"
    code = (b"\xbe" + struct.pack("<I", entry + 25) +      # mov esi, message
            b"\xba\xf8\x03\x00\x00"                       # mov edx, 0x3f8 (COM1)
            b"\xac\x84\xc0\x74\x03\xee\xeb\xf8"           # lodsb; test al,al; jz +3; out dx,al; jmp lodsb
            b"\xb0\xfe\xe6\x64"                           # mov al, 0xfe; out 0x64, al: reset
            b"\xf4\xeb\xfd")                              # hlt; jmp hlt
    assert len(code) == 25
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initrd.cpio.gz"
    kernel.write_bytes(vmlinux(entry=entry, text=code + message))
    initrd.write_bytes(b"070701" + b"0" * 100)
    return kernel, initrd


@pytest.mark.parametrize("monitor", ["bt", "trap"])
def test_the_demo_boots_natively_and_under_the_monitor_and_gives_its_verdict(tmp_path, monkeypatch, capsys,
                                                                             monitor):
    kernel, initrd = tiny_linux(tmp_path)
    monkeypatch.setattr(demo_linux, "KERNEL", kernel)
    monkeypatch.setattr(demo_linux, "INITRD", initrd)
    args = build_parser().parse_args(["demo", "--linux", "--technique", monitor])
    assert demo_linux.command(args) == 0
    err = capsys.readouterr().err
    assert f"{demo_linux.MINUTES['native']} minutes natively and {demo_linux.MINUTES[monitor]} under {monitor}" in err
    assert err.count("    Linux version 6.1.0-test") == 2                 # each boot's key lines
    assert err.count("    linux guest ready: Linux 6.1.0-test") == 2
    assert f"verdict: under {monitor}, same output as native (2 lines of the guest's own report)" in err
