#!/usr/bin/env python3
"""Build ringvisor's Linux initramfs: a gzip-compressed cpio archive in the
"newc" format the kernel unpacks (Documentation/driver-api/early-userspace/
buffer-format.rst), holding a static busybox, its applet links, /init and
/dev/console, and any further programs in /bin under their own names (the
Linux nanobench). Written in Python so no root (mknod) or cpio tool is needed.

usage: mkinitramfs.py BUSYBOX INIT OUTPUT [PROGRAM...]
"""
from __future__ import annotations

import gzip
import os
import stat
import subprocess
import sys

DIRS = ("bin", "sbin", "dev", "proc", "sys", "tmp", "root", "etc", "usr", "usr/bin", "usr/sbin")
CONSOLE = ("dev/console", 5, 1)          # char device 5:1, the kernel's console
TRAILER = "TRAILER!!!"


def _header(ino: int, mode: int, nlink: int, size: int, name: str,
            rdev: tuple[int, int] = (0, 0)) -> bytes:
    fields = (ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
    return b"070701" + b"".join(b"%08X" % f for f in fields)


def _pad4(blob: bytes) -> bytes:
    return blob + b"\0" * (-len(blob) % 4)


class Archive:
    def __init__(self):
        self.parts: list[bytes] = []
        self.ino = 1

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        nlink = 2 if stat.S_ISDIR(mode) else 1
        self.parts.append(_pad4(_header(self.ino, mode, nlink, len(data), name, rdev)
                                + name.encode() + b"\0"))
        self.parts.append(_pad4(data))
        self.ino += 1

    def finish(self) -> bytes:
        self.add(TRAILER, 0)
        return b"".join(self.parts)


def applets(busybox: str) -> list[str]:
    """The applets this busybox has, with their install paths (bin/sh ...)."""
    out = subprocess.run([busybox, "--list-full"], check=True, capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def build(busybox: str, init: str, programs: tuple[str, ...] = ()) -> bytes:
    a = Archive()
    for d in DIRS:
        a.add(d, stat.S_IFDIR | 0o755)
    name, major, minor = CONSOLE
    a.add(name, stat.S_IFCHR | 0o600, rdev=(major, minor))
    with open(busybox, "rb") as f:
        a.add("bin/busybox", stat.S_IFREG | 0o755, f.read())
    for path in applets(busybox):
        if path != "bin/busybox" and os.path.dirname(path) in DIRS:
            target = os.path.relpath("bin/busybox", os.path.dirname(path))
            a.add(path, stat.S_IFLNK | 0o777, target.encode())
    with open(init, "rb") as f:
        a.add("init", stat.S_IFREG | 0o755, f.read())
    for program in programs:
        with open(program, "rb") as f:
            a.add(f"bin/{os.path.basename(program)}", stat.S_IFREG | 0o755, f.read())
    return a.finish()


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    _, busybox, init, output, *programs = argv
    archive = build(busybox, init, tuple(programs))
    tmp = output + ".tmp"
    with open(tmp, "wb") as f:
        # mtime=0: the same inputs give the same bytes.
        f.write(gzip.compress(archive, compresslevel=9, mtime=0))
    os.replace(tmp, output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
