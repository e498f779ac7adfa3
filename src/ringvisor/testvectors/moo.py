"""Reader for MOO files (SingleStepTests "Machine Opcode Operation", v1.x).

A file (gzip-compressed or not) is a sequence of chunks `type[4] len:u32
payload`; unknown chunks are skipped by length. See
x86-singlestep/README.md in the shared test data (testvectors/data.py) for
the layout.
"""
from __future__ import annotations

import gzip
import hashlib
import struct
from dataclasses import dataclass, field
from pathlib import Path

REGS16 = ("ax", "bx", "cx", "dx", "cs", "ss", "ds", "es", "sp", "bp", "si", "di", "ip", "flags")
REGS32 = ("cr0", "cr3", "eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp", "cs", "ds", "es",
          "fs", "gs", "ss", "eip", "eflags", "dr6", "dr7")


@dataclass
class CpuImage:
    regs: dict[str, int] = field(default_factory=dict)
    ram: list[tuple[int, int]] = field(default_factory=list)
    queue: bytes = b""
    reg_masks: dict[str, int] = field(default_factory=dict)
    ea: tuple | None = None


@dataclass
class Test:
    index: int
    name: str = ""
    bytes: bytes = b""
    init: CpuImage = field(default_factory=CpuImage)
    final: CpuImage = field(default_factory=CpuImage)
    exception: tuple[int, int] | None = None      # (vector, address of pushed FLAGS)
    hash: str = ""
    cycles: int = 0


@dataclass
class MooFile:
    version: tuple[int, int]
    cpu: str
    test_count: int
    meta: dict
    tests: list[Test]


def _chunks(data: bytes, pos: int = 0, end: int | None = None):
    end = len(data) if end is None else end
    while pos + 8 <= end:
        kind = data[pos:pos + 4].decode("ascii", "replace")
        (length,) = struct.unpack_from("<I", data, pos + 4)
        yield kind, pos + 8, length
        pos += 8 + length


def _regs(data: bytes, off: int, length: int, names, wide: bool) -> dict[str, int]:
    fmt, size = ("<I", 4) if wide else ("<H", 2)
    (mask,) = struct.unpack_from(fmt, data, off)
    out = {}
    p = off + size
    for bit, name in enumerate(names):
        if mask >> bit & 1:
            (out[name],) = struct.unpack_from(fmt, data, p)
            p += size
    return out


def _image(data: bytes, off: int, length: int) -> CpuImage:
    img = CpuImage()
    for kind, p, n in _chunks(data, off, off + length):
        if kind == "REGS":
            img.regs = _regs(data, p, n, REGS16, False)
        elif kind == "RG32":
            img.regs = _regs(data, p, n, REGS32, True)
        elif kind == "RMSK":
            img.reg_masks = _regs(data, p, n, REGS16, False)
        elif kind == "RM32":
            img.reg_masks = _regs(data, p, n, REGS32, True)
        elif kind == "RAM ":
            (count,) = struct.unpack_from("<I", data, p)
            img.ram = [struct.unpack_from("<IB", data, p + 4 + 5 * i) for i in range(count)]
        elif kind == "QUEU":
            (ql,) = struct.unpack_from("<I", data, p)
            img.queue = data[p + 4:p + 4 + ql]
        elif kind == "EA32":
            img.ea = struct.unpack_from("<BHIIIII", data, p)
    return img


def _test(data: bytes, off: int, length: int) -> Test:
    (index,) = struct.unpack_from("<I", data, off)
    t = Test(index)
    for kind, p, n in _chunks(data, off + 4, off + length):
        if kind == "NAME":
            (sl,) = struct.unpack_from("<I", data, p)
            t.name = data[p + 4:p + 4 + sl].decode("ascii", "replace")
        elif kind == "BYTS":
            (bl,) = struct.unpack_from("<I", data, p)
            t.bytes = data[p + 4:p + 4 + bl]
        elif kind == "INIT":
            t.init = _image(data, p, n)
        elif kind == "FINA":
            t.final = _image(data, p, n)
        elif kind == "EXCP":
            t.exception = struct.unpack_from("<BI", data, p)
        elif kind == "HASH":
            t.hash = data[p:p + 20].hex()
        elif kind == "CYCL":
            (t.cycles,) = struct.unpack_from("<I", data, p)
    return t


def parse(data: bytes) -> MooFile:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    version, cpu, count, meta, tests = (0, 0), "", 0, {}, []
    for kind, p, n in _chunks(data):
        if kind == "MOO ":
            major, minor, _res, count = struct.unpack_from("<BBHI", data, p)
            version = (major, minor)
            cpu = data[p + 8:p + 12].decode("ascii", "replace").strip()
        elif kind == "META":
            cmaj, cmin, ctype, opcode = struct.unpack_from("<BBBI", data, p)
            mnem = data[p + 7:p + 15].decode("ascii", "replace").rstrip("\0 ")
            tcount, seed, mode = struct.unpack_from("<IQB", data, p + 15)
            meta = dict(collection=(cmaj, cmin), cpu_type=ctype, opcode=opcode, mnemonic=mnem,
                        test_count=tcount, seed=seed, cpu_mode=mode)
        elif kind == "TEST":
            tests.append(_test(data, p, n))
    return MooFile(version, cpu, count, meta, tests)


def load(path: str | Path) -> MooFile:
    return parse(Path(path).read_bytes())


def revoked(folder: str | Path) -> set[str]:
    f = Path(folder) / "revocation_list.txt"
    if not f.exists():
        return set()
    return {ln.strip().lower() for ln in f.read_text().splitlines()
            if ln.strip() and not ln.startswith("#")}


_ = hashlib
