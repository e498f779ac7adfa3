"""A Linux bzImage as a boot loader sees it: the real-mode setup header
(the kernel's Documentation/arch/x86/boot.rst, "The real-mode kernel header")
and the compressed protected-mode payload, decompressed here on the host.

The payload is what the kernel's own decompressor would unpack: the vmlinux
ELF (stripped), followed on relocatable 32-bit kernels by its relocation
table, compressed as one stream, with the uncompressed size appended as 4
little-endian bytes (scripts/Makefile.lib, size_append). Debian's kernels
use xz with the x86 BCJ filter, which liblzma (Python's lzma) decodes from
the stream's own filter chain.
"""
from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from dataclasses import dataclass

from ringvisor.errors import GuestImageError

HEADER_OFFSET = 0x1F1          # the setup header inside the image and inside boot_params
HDRS = b"HdrS"
BOOT_FLAG = 0xAA55
LOADED_HIGH = 0x01             # loadflags: the protected-mode code is loaded at 0x100000
MIN_VERSION = 0x0208           # payload_offset/length appeared in 2.08
DEFAULT_SETUP_SECTS = 4        # setup_sects 0 means 4 (boot.rst)
SECTOR = 512

# (offset, struct format, name) of each setup header field, as boot.rst lists them.
FIELDS: tuple[tuple[int, str, str], ...] = (
    (0x1F1, "B", "setup_sects"),
    (0x1F2, "H", "root_flags"),
    (0x1F4, "I", "syssize"),
    (0x1F8, "H", "ram_size"),
    (0x1FA, "H", "vid_mode"),
    (0x1FC, "H", "root_dev"),
    (0x1FE, "H", "boot_flag"),
    (0x200, "H", "jump"),
    (0x202, "4s", "header"),
    (0x206, "H", "version"),
    (0x208, "I", "realmode_swtch"),
    (0x20C, "H", "start_sys_seg"),
    (0x20E, "H", "kernel_version"),
    (0x210, "B", "type_of_loader"),
    (0x211, "B", "loadflags"),
    (0x212, "H", "setup_move_size"),
    (0x214, "I", "code32_start"),
    (0x218, "I", "ramdisk_image"),
    (0x21C, "I", "ramdisk_size"),
    (0x220, "I", "bootsect_kludge"),
    (0x224, "H", "heap_end_ptr"),
    (0x226, "B", "ext_loader_ver"),
    (0x227, "B", "ext_loader_type"),
    (0x228, "I", "cmd_line_ptr"),
    (0x22C, "I", "initrd_addr_max"),
    (0x230, "I", "kernel_alignment"),
    (0x234, "B", "relocatable_kernel"),
    (0x235, "B", "min_alignment"),
    (0x236, "H", "xloadflags"),
    (0x238, "I", "cmdline_size"),
    (0x23C, "I", "hardware_subarch"),
    (0x240, "Q", "hardware_subarch_data"),
    (0x248, "I", "payload_offset"),
    (0x24C, "I", "payload_length"),
    (0x250, "Q", "setup_data"),
    (0x258, "Q", "pref_address"),
    (0x260, "I", "init_size"),
    (0x264, "I", "handover_offset"),
    (0x268, "I", "kernel_info_offset"),
)
FIELD = {name: (offset, fmt) for offset, fmt, name in FIELDS}


def header_end(jump_displacement: int) -> int:
    """The setup header ends where the short jump at 0x200 lands: 0x202 plus
    the byte at 0x201 (boot.rst: copy that much into boot_params)."""
    return 0x202 + jump_displacement


def is_bzimage(data: bytes) -> bool:
    return (len(data) >= 0x208 and data[0x202:0x206] == HDRS
            and struct.unpack_from("<H", data, 0x1FE)[0] == BOOT_FLAG)


@dataclass(frozen=True)
class SetupHeader:
    raw: bytes                 # the header bytes, 0x1F1 up to its end
    fields: dict

    def __getattr__(self, name: str):
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def version_text(self) -> str:
        return f"{self.version >> 8}.{self.version & 0xFF:02d}"


def parse_header(data: bytes, name: str) -> SetupHeader:
    if not is_bzimage(data):
        raise GuestImageError(f"{name}: not a Linux bzImage (no 'HdrS' setup header at 0x202)")
    version = struct.unpack_from("<H", data, 0x206)[0]
    end = header_end(data[0x201])
    if end > len(data) or end < 0x208:
        raise GuestImageError(f"{name}: truncated Linux setup header")
    fields = {}
    for offset, fmt, field in FIELDS:
        if offset + struct.calcsize("<" + fmt) <= end:
            fields[field] = struct.unpack_from("<" + fmt, data, offset)[0]
    header = SetupHeader(bytes(data[HEADER_OFFSET:end]), fields)
    if version < MIN_VERSION:
        raise GuestImageError(f"{name}: Linux boot protocol {header.version_text} is too old: ringvisor "
                              f"decompresses the kernel itself and needs protocol 2.08 or newer (Linux 2.6.26+)")
    if not header.loadflags & LOADED_HIGH:
        raise GuestImageError(f"{name}: a zImage (loaded below 1 MiB); ringvisor boots bzImages")
    return header


def setup_size(header: SetupHeader) -> int:
    """Bytes of real-mode code before the protected-mode part of the image."""
    return ((header.setup_sects or DEFAULT_SETUP_SECTS) + 1) * SECTOR


# Payload formats by their magic (scripts/Makefile.lib's compressors).
_UNSUPPORTED = ((b"\x89LZO", "LZO"), (b"\x02\x21\x4c\x18", "LZ4"), (b"\x28\xb5\x2f\xfd", "zstd"))


def _decompressor(payload: bytes):
    if payload.startswith(b"\xfd7zXZ\x00"):
        return "xz", lzma.LZMADecompressor(lzma.FORMAT_XZ)
    if payload.startswith(b"\x1f\x8b"):
        return "gzip", zlib.decompressobj(16 + zlib.MAX_WBITS)
    if payload.startswith(b"BZh"):
        return "bzip2", bz2.BZ2Decompressor()
    if payload.startswith(b"\x5d\x00\x00"):
        return "lzma", lzma.LZMADecompressor(lzma.FORMAT_ALONE)
    return None, None


def payload(data: bytes, header: SetupHeader, name: str) -> bytes:
    """The decompressed payload (a vmlinux ELF, possibly with relocations after it)."""
    start = setup_size(header) + header.payload_offset
    end = start + header.payload_length
    if header.payload_length < 4 or end > len(data):
        raise GuestImageError(f"{name}: the kernel payload ({start:#x}-{end:#x}) lies outside the "
                              f"{len(data)}-byte file (truncated download?)")
    blob = data[start:end]
    if blob.startswith(b"\x7fELF"):
        return blob                                  # CONFIG_KERNEL_UNCOMPRESSED
    kind, dec = _decompressor(blob)
    if dec is None:
        known = next((fmt for magic, fmt in _UNSUPPORTED if blob.startswith(magic)), None)
        what = f"{known}-compressed" if known else f"compressed in an unknown format (magic {blob[:4].hex()})"
        raise GuestImageError(f"{name}: the kernel payload is {what}; ringvisor decompresses "
                              "xz, gzip, bzip2 and lzma kernels")
    expected = struct.unpack_from("<I", blob, len(blob) - 4)[0]
    try:
        out = dec.decompress(blob)
    except (lzma.LZMAError, zlib.error, OSError, EOFError, ValueError) as e:
        raise GuestImageError(f"{name}: the {kind} kernel payload does not decompress: {e}") from None
    if not dec.eof or len(out) != expected:
        raise GuestImageError(f"{name}: the {kind} kernel payload is truncated or corrupt "
                              f"({len(out)} bytes out, {expected} announced)")
    return out
