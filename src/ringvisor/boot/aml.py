"""Just enough of an AML encoder (ACPI spec chapter 20) for the DSDT.

Each function returns the bytes of one term; they nest as the ASL they
stand for: `scope("\\_SB_", device("COM1", name("_HID", eisa_id("PNP0501"))))`.
"""
from __future__ import annotations

ZERO_OP, ONE_OP, ONES_OP = 0x00, 0x01, 0xFF
BYTE_PREFIX, WORD_PREFIX, DWORD_PREFIX, STRING_PREFIX, QWORD_PREFIX = 0x0A, 0x0B, 0x0C, 0x0D, 0x0E
NAME_OP, SCOPE_OP, BUFFER_OP, PACKAGE_OP = 0x08, 0x10, 0x11, 0x12
EXT_OP, DEVICE_OP = 0x5B, 0x82
ROOT_CHAR, DUAL_NAME_PREFIX, MULTI_NAME_PREFIX = 0x5C, 0x2E, 0x2F


def pkg_length(body: int) -> bytes:
    """PkgLength for a body of `body` bytes (the count includes itself)."""
    if body + 1 < 1 << 6:
        return bytes([body + 1])
    for extra in (1, 2, 3):
        total = body + 1 + extra
        if total < 1 << (4 + 8 * extra):
            rest = (total >> 4).to_bytes(extra, "little")
            return bytes([extra << 6 | total & 0xF]) + rest
    raise ValueError(f"AML package of {body} bytes is too large")


def name_seg(seg: str) -> bytes:
    if not 1 <= len(seg) <= 4 or not (seg[0].isupper() or seg[0] == "_") or \
            not all(c.isupper() or c.isdigit() or c == "_" for c in seg):
        raise ValueError(f"bad ACPI name segment {seg!r}")
    return seg.ljust(4, "_").encode()


def name_string(path: str) -> bytes:
    prefix = b""
    if path.startswith("\\"):
        prefix, path = bytes([ROOT_CHAR]), path[1:]
    segs = [name_seg(s) for s in path.split(".")] if path else []
    if len(segs) == 0:
        return prefix + b"\x00"
    if len(segs) == 1:
        return prefix + segs[0]
    if len(segs) == 2:
        return prefix + bytes([DUAL_NAME_PREFIX]) + b"".join(segs)
    return prefix + bytes([MULTI_NAME_PREFIX, len(segs)]) + b"".join(segs)


def integer(value: int) -> bytes:
    if value == 0:
        return bytes([ZERO_OP])
    if value == 1:
        return bytes([ONE_OP])
    for prefix, size in ((BYTE_PREFIX, 1), (WORD_PREFIX, 2), (DWORD_PREFIX, 4), (QWORD_PREFIX, 8)):
        if value < 1 << (8 * size):
            return bytes([prefix]) + value.to_bytes(size, "little")
    raise ValueError(f"AML integer {value:#x} does not fit 64 bits")


def string(text: str) -> bytes:
    return bytes([STRING_PREFIX]) + text.encode("ascii") + b"\x00"


def eisa_id(text: str) -> bytes:
    """EisaId("PNP0501"): three letters in 5 bits each, then four hex digits."""
    if len(text) != 7:
        raise ValueError(f"bad EISA ID {text!r}")
    letters = sum((ord(c) - 0x40) << shift for c, shift in zip(text[:3], (10, 5, 0)))
    raw = letters.to_bytes(2, "big") + int(text[3:], 16).to_bytes(2, "big")
    return integer(int.from_bytes(raw, "little"))


def name(path: str, value: bytes) -> bytes:
    return bytes([NAME_OP]) + name_string(path) + value


def _block(opcode: bytes, head: bytes, terms: tuple[bytes, ...]) -> bytes:
    body = head + b"".join(terms)
    return opcode + pkg_length(len(body)) + body


def scope(path: str, *terms: bytes) -> bytes:
    return _block(bytes([SCOPE_OP]), name_string(path), terms)


def device(path: str, *terms: bytes) -> bytes:
    return _block(bytes([EXT_OP, DEVICE_OP]), name_string(path), terms)


def package(*elements: bytes) -> bytes:
    return _block(bytes([PACKAGE_OP]), bytes([len(elements)]), elements)


def buffer(data: bytes) -> bytes:
    return _block(bytes([BUFFER_OP]), integer(len(data)), (data,))


# -- resource descriptors (ACPI 6.4.2, 6.4.3) for _CRS buffers ---------------------------------

def io_port(base: int, length: int) -> bytes:
    """IO (Decode16, base, base, 1, length)."""
    return bytes([0x47, 0x01]) + base.to_bytes(2, "little") * 2 + bytes([1, length])


def irq_no_flags(*irqs: int) -> bytes:
    mask = sum(1 << i for i in irqs)
    return bytes([0x22]) + mask.to_bytes(2, "little")


def memory32_fixed(base: int, length: int, writable: bool = True) -> bytes:
    return bytes([0x86, 0x09, 0x00, int(writable)]) + base.to_bytes(4, "little") + length.to_bytes(4, "little")


def resource_template(*descriptors: bytes) -> bytes:
    return buffer(b"".join(descriptors) + bytes([0x79, 0x00]))   # end tag, checksum 0 = valid
