"""guests/linux/mkinitramfs.py: the initramfs is a gzip'd cpio archive in
the kernel's "newc" format (Documentation/driver-api/early-userspace/
buffer-format.rst): 110-byte ASCII headers, names and data padded to 4
bytes, a TRAILER!!! entry; checked here with an independent reader of that
format, on a stand-in busybox (a shell script that lists applets)."""
from __future__ import annotations

import gzip
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINUX = ROOT / "guests" / "linux"
FIELDS = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor", "devminor",
          "rdevmajor", "rdevminor", "namesize", "check")


def read_newc(archive: bytes) -> dict[str, dict]:
    entries, off = {}, 0
    while True:
        assert archive[off:off + 6] == b"070701", f"bad magic at {off}"
        head = {f: int(archive[off + 6 + 8 * i:off + 14 + 8 * i], 16) for i, f in enumerate(FIELDS)}
        name = archive[off + 110:off + 110 + head["namesize"] - 1].decode()
        assert archive[off + 110 + head["namesize"] - 1] == 0
        off = (off + 110 + head["namesize"] + 3) & ~3
        head["data"] = archive[off:off + head["filesize"]]
        off = (off + head["filesize"] + 3) & ~3
        if name == "TRAILER!!!":
            assert not archive[off:].strip(b"\0")
            return entries
        entries[name] = head


@pytest.fixture
def built(tmp_path):
    busybox = tmp_path / "busybox"
    busybox.write_text("#!/bin/sh\n[ \"$1\" = --list-full ] && printf 'bin/sh\\nbin/mount\\nsbin/reboot\\n"
                       "usr/bin/uname\\nbin/busybox\\n'\n")
    busybox.chmod(0o755)
    out = tmp_path / "initrd.cpio.gz"
    subprocess.run([sys.executable, str(LINUX / "mkinitramfs.py"), str(busybox), str(LINUX / "init"), str(out)],
                   check=True)
    return busybox, out


def test_archive_holds_init_busybox_applet_links_and_the_console(built):
    busybox, out = built
    entries = read_newc(gzip.decompress(out.read_bytes()))
    init = entries["init"]
    assert stat.S_ISREG(init["mode"]) and init["mode"] & 0o111 and init["data"] == (LINUX / "init").read_bytes()
    assert entries["bin/busybox"]["data"] == busybox.read_bytes()
    for link, target in (("bin/sh", b"busybox"), ("sbin/reboot", b"../bin/busybox"),
                         ("usr/bin/uname", b"../../bin/busybox")):
        assert stat.S_ISLNK(entries[link]["mode"]) and entries[link]["data"] == target
    console = entries["dev/console"]
    assert stat.S_ISCHR(console["mode"]) and (console["rdevmajor"], console["rdevminor"]) == (5, 1)
    for d in ("proc", "sys", "dev", "tmp"):
        assert stat.S_ISDIR(entries[d]["mode"])
    assert len({e["ino"] for e in entries.values()}) == len(entries)


def test_the_same_inputs_give_the_same_bytes(built, tmp_path):
    busybox, out = built
    again = tmp_path / "again.cpio.gz"
    subprocess.run([sys.executable, str(LINUX / "mkinitramfs.py"), str(busybox), str(LINUX / "init"), str(again)],
                   check=True)
    assert again.read_bytes() == out.read_bytes()


def test_init_prints_the_ready_line_and_ends_with_a_reset():
    script = (LINUX / "init").read_text()
    assert script.startswith("#!/bin/sh\n")
    assert 'echo "linux guest ready: $(uname -sr)"' in script
    assert "rdinit-shell" in script and script.rstrip().endswith("reboot -f")


def test_further_programs_land_in_bin_under_their_own_names(tmp_path):
    busybox = tmp_path / "busybox"
    busybox.write_text("#!/bin/sh\n[ \"$1\" = --list-full ] && printf 'bin/sh\\n'\n")
    busybox.chmod(0o755)
    program = tmp_path / "nanobench"
    program.write_bytes(b"\x7fELF stand-in")
    out = tmp_path / "initrd.cpio.gz"
    subprocess.run([sys.executable, str(LINUX / "mkinitramfs.py"), str(busybox), str(LINUX / "init"), str(out),
                    str(program)], check=True)
    entry = read_newc(gzip.decompress(out.read_bytes()))["bin/nanobench"]
    assert stat.S_ISREG(entry["mode"]) and entry["mode"] & 0o111 and entry["data"] == program.read_bytes()


def test_init_runs_nanobench_when_the_command_line_asks():
    script = (LINUX / "init").read_text()
    assert '*" rdinit-nanobench "*|*" rdinit-nanobench="*)' in script
    assert '/bin/nanobench "${iters:-200}"' in script and 'echo "nanobench exit status $?"' in script
