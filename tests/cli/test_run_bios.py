"""`ringvisor run --bios ROM`: our test ROM through the command line (POST
codes in --stats and --json, the halt line), bad input as one line and exit
2, and Debian's SeaBIOS (firmware nobody here wrote) POSTing on the soft
engine's pc machine when it is installed (.ci/run installs it)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "boot"))
from rom_rig import BANNER, needs_as, test_rom  # noqa: E402

SEABIOS = "/usr/share/seabios/bios.bin"
SEABIOS_256K = "/usr/share/seabios/bios-256k.bin"


def ringvisor(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "ringvisor", "run", *args], capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


@pytest.fixture
def rom(tmp_path):
    path = tmp_path / "test.rom"
    path.write_bytes(test_rom())
    return path


@needs_as
def test_post_codes_in_stats_and_json_and_the_halt_line(rom, tmp_path):
    stats = tmp_path / "s.json"
    proc = ringvisor("--bios", str(rom), "--halt-ok", "--stats", "--json", str(stats))
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert proc.stdout == BANNER
    assert err.splitlines()[0] == ("ringvisor: halted with interrupts disabled (cli; hlt), next "
                                   "instruction at 0008:000f0064 (status 0)")
    assert "POST codes: 01 11 12 13 14" in err
    doc = json.loads(stats.read_text())
    assert doc["post_codes"]["codes"] == ["0x01", "0x11", "0x12", "0x13", "0x14"]
    assert doc["reason"].startswith("halted with interrupts disabled")


@needs_as
def test_without_halt_ok_the_halt_is_reported_as_a_crash(rom):
    proc = ringvisor("--bios", str(rom))
    err = proc.stderr.decode()
    assert proc.returncode == 4, err
    assert err.splitlines()[0].endswith("nothing can wake it (--halt-ok ends such a run with status 0)")
    assert "Traceback" not in err


@pytest.mark.parametrize("extra, pattern", [
    (["--engine", "kvm"], "--bios runs on the soft engine"),
    (["--technique", "trap"], "the trap monitor boots kernels, not firmware"),
    (["--technique", "hw", "--engine", "soft"], "the hw monitor boots kernels"),
    (["KERNEL"], "drop a GUEST kernel"),
    (["--cmdline", "quiet"], "drop --cmdline"),
    (["--workload", "compute"], "drop --workload"),
    (["--format", "flat16"], "drop --format flat16"),
])
def test_bios_with_what_it_replaces_is_one_line(tmp_path, extra, pattern):
    rom = tmp_path / "rom.bin"
    rom.write_bytes(bytes(64 << 10))
    extra = [str(rom) if a == "KERNEL" else a for a in extra]
    proc = ringvisor("--bios", str(rom), *extra)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert len(err.splitlines()) == 1 and pattern in err, err


def test_halt_ok_under_a_monitor_is_one_line():
    proc = ringvisor("--engine", "soft", "--technique", "trap", "--halt-ok")
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.splitlines() == ["ringvisor: --halt-ok applies to guests on bare hardware (--technique "
                                "native, or hw on the kvm engine); the trap monitor reports a guest's "
                                "cli; hlt itself"]


@pytest.mark.parametrize("size, pattern", [
    (None, "does not exist"),
    (0, "empty file"),
    (96 << 10, "98,304 bytes is not a multiple of 64 KiB"),
    (32 << 20, "32 MiB is above the 16 MiB a PC decodes"),
])
def test_bad_rom_files_are_one_line(tmp_path, size, pattern):
    rom = tmp_path / "rom.bin"
    if size is not None:
        with open(rom, "wb") as f:
            f.truncate(size)
    proc = ringvisor("--bios", str(rom))
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert len(err.splitlines()) == 1 and pattern in err, err


@pytest.mark.parametrize("rom", [SEABIOS, SEABIOS_256K])
def test_debians_seabios_posts_and_finds_no_bootable_device(tmp_path, rom):
    """SeaBIOS reads fw_cfg (signature, DMA, etc/e820), finds the 440FX
    host bridge and the PIIX3 on PCI, shadows itself through the PAM
    registers (bios-256k.bin cannot run without: its init code lies below
    the ROM's 128 KiB window), counts the CPUs, sets up its tables, looks
    for a boot device, and 60 s (virtual, halted) after 'No bootable
    device.' resets through 0xCF9, which ends the run."""
    if not os.path.exists(rom):
        pytest.skip("Debian's seabios package is not installed")
    log, stats = tmp_path / "debugcon.txt", tmp_path / "s.json"
    proc = ringvisor("--bios", rom, "--debugcon", f"file:{log}", "--json", str(stats), "--timeout", "240")
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert err.splitlines() == ["ringvisor: guest reset (port 0xCF9 hard reset) (status 0)"]
    debug = log.read_text()
    for line in ("SeaBIOS (version 1.", "Found QEMU fw_cfg", "QEMU fw_cfg DMA interface supported",
                 "qemu/e820: addr 0x0000000000100000 len 0x0000000007f00000 [RAM]",
                 "Running on QEMU (i440fx)", "Found 2 PCI devices (max PCI bus is 00)", "PCI: init bdf=00:00.0 id=8086:1237",
                 "PCI: init bdf=00:01.0 id=8086:7000", "Found 1 cpu(s) max supported 1 cpu(s)",
                 "sercon: using ioport 0x3f8", "No bootable device.", "Attempting a hard reboot"):
        assert line in debug, (line, debug)
    screen = proc.stdout.decode()         # SeaBIOS's serial console (sercon): the "screen"
    assert "SeaBIOS (version" in screen and "No bootable device.  Retrying in 60 seconds." in screen
    doc = json.loads(stats.read_text())
    assert doc["platform"]["idle_virtual_seconds"] > 59        # the retry wait, halted
    pam = doc["platform"]["pc"]["pam"]
    assert pam["switches"] > 0 and pam["writes_fixed"] == 0     # shadowed, never wrote a locked segment
