"""The Linux boot protocol loader (boot/linux.py, boot/bzimage.py,
boot/zeropage.py) on bzImages built here byte by byte as the kernel's build
lays them out (Documentation/arch/x86/boot.rst), and on Debian's own kernel
when `make linux` has fetched it."""
from __future__ import annotations

import bz2
import gzip
import lzma
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from ringvisor.boot import bzimage, image, linux, zeropage
from ringvisor.boot.layout import Layout
from ringvisor.errors import ConfigError, GuestImageError
from ringvisor.machine.memory import GuestMemory

MB = 1 << 20
ROOT = Path(__file__).resolve().parents[2]
DEBIAN = ROOT / "guests" / "linux" / "build"
SETUP_SECTS = 4


def vmlinux(entry=0x1000000, text=b"\xfa\xf4" * 64, bss=0x3000, cls=1, note=True):
    """A 32-bit ELF like an i386 vmlinux: a text and a data+bss segment at
    16 MiB physical (0xC1000000 virtual), and the "Linux" ELF note."""
    note_blob = struct.pack("<III", 6, 4, 0x100) + b"Linux\0\0\0" + b"\0" * 4 if note else b""
    phnum = 3 if note else 2
    data_off = 52 + 32 * phnum
    data = b"\x11" * 0x100
    ehdr = struct.pack("<16sHHIIIIIHHHHHH", b"\x7fELF" + bytes([cls, 1, 1]) + bytes(9), 2, 3, 1,
                       entry, 52, 0, 0, 52, 32, phnum, 40, 0, 0)
    text_off, data_off2, note_off = data_off, data_off + len(text), data_off + len(text) + len(data)
    phdrs = struct.pack("<8I", 1, text_off, 0xC1000000, 0x1000000, len(text), len(text), 5, 0x1000)
    phdrs += struct.pack("<8I", 1, data_off2, 0xC1010000, 0x1010000, len(data), len(data) + bss, 6, 0x1000)
    if note:
        phdrs += struct.pack("<8I", 4, note_off, 0, 0, len(note_blob), len(note_blob), 4, 4)
    return ehdr + phdrs + text + data + note_blob


def compress(payload: bytes, kind: str) -> bytes:
    if kind == "xz":       # as scripts/xz_wrap.sh does for x86: the BCJ filter, then LZMA2
        blob = lzma.compress(payload, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32,
                             filters=[{"id": lzma.FILTER_X86}, {"id": lzma.FILTER_LZMA2}])
    elif kind == "gzip":
        blob = gzip.compress(payload)
    elif kind == "bzip2":
        blob = bz2.compress(payload)
    elif kind == "lzma":
        blob = lzma.compress(payload, format=lzma.FORMAT_ALONE)
    elif kind == "raw":
        return payload
    else:
        blob = kind.encode("latin-1")
    return blob + struct.pack("<I", len(payload))           # size_append


def bzimage_of(payload: bytes, version=0x020F, xloadflags=0, initrd_addr_max=0x7FFFFFFF,
               cmdline_size=2047, init_size=0x20000, loadflags=bzimage.LOADED_HIGH, cut=0):
    """A bzImage: boot sector + setup sectors carrying the header, then the
    protected-mode part with the payload at payload_offset."""
    setup = bytearray((SETUP_SECTS + 1) * 512)
    fields = {"setup_sects": SETUP_SECTS, "boot_flag": 0xAA55, "jump": 0x6AEB, "header": b"HdrS",
              "version": version, "loadflags": loadflags, "code32_start": 0x100000,
              "initrd_addr_max": initrd_addr_max, "kernel_alignment": 0x1000000, "relocatable_kernel": 1,
              "xloadflags": xloadflags, "cmdline_size": cmdline_size, "payload_offset": 0x94,
              "payload_length": len(payload), "pref_address": 0x1000000, "init_size": init_size}
    for name, value in fields.items():
        offset, fmt = bzimage.FIELD[name]
        struct.pack_into("<" + fmt, setup, offset, value)
    return bytes(setup) + b"\x90" * 0x94 + payload[:len(payload) - cut]


def boot(data, cmdline="", initrd=None, ram=64 * MB, reserved=0):
    mem = GuestMemory(ram)
    layout = Layout(ram, reserved)
    state = linux.load(data, "vmlinuz", mem, layout, cmdline, initrd)
    return mem, layout, state


def boot_params(mem):
    return mem.read(linux.BOOT_PARAMS_ADDRESS, zeropage.SIZE)


@pytest.mark.parametrize("kind", ["xz", "gzip", "bzip2", "lzma", "raw"])
def test_bzimage_payload_is_decompressed_and_vmlinux_loaded_at_its_physical_addresses(kind):
    elf = vmlinux()
    mem, layout, state = boot(bzimage_of(compress(elf, kind)))
    assert mem.read(0x1000000, 128) == b"\xfa\xf4" * 64
    assert mem.read(0x1010000, 0x100) == b"\x11" * 0x100
    assert mem.read(0x1010100, 0x3000) == bytes(0x3000)          # bss zeroed
    assert state.eip == 0x1000000


def test_xz_with_the_x86_bcj_filter_restores_call_targets():
    # BCJ rewrites E8 rel32 into absolute addresses before compressing: the
    # bytes must come back exactly.
    text = b"".join(b"\xe8" + struct.pack("<i", -i * 7) + b"\x90" * 3 for i in range(500))
    mem, _, _ = boot(bzimage_of(compress(vmlinux(text=text), "xz")))
    assert mem.read(0x1000000, len(text)) == text


def test_entry_state_is_the_32_bit_boot_protocol():
    mem, _, s = boot(bzimage_of(compress(vmlinux(), "gzip")))
    assert s.esi == linux.BOOT_PARAMS_ADDRESS and (s.ebp, s.edi, s.ebx) == (0, 0, 0)
    assert s.cs.selector == 0x10 and all(getattr(s, r).selector == 0x18 for r in ("ds", "es", "ss"))
    assert s.cr0 & 1 and not s.cr0 & 0x80000000 and not s.eflags & 0x200   # PE, no paging, IF off
    for seg in (s.cs, s.ds, s.ss):
        assert (seg.base, seg.limit, seg.db, seg.g) == (0, 0xFFFFFFFF, True, True)
    # The GDT in memory describes the same flat segments at 0x10 and 0x18.
    gdt = mem.read(s.gdt.base, s.gdt.limit + 1)
    code, data = struct.unpack_from("<QQ", gdt, 0x10)
    for desc, type_ in ((code, 0xB), (data, 0x3)):
        base = (desc >> 16 & 0xFFFFFF) | (desc >> 56 & 0xFF) << 24
        limit = (desc & 0xFFFF) | (desc >> 48 & 0xF) << 16
        access, flags = desc >> 40 & 0xFF, desc >> 52 & 0xF
        assert (base, limit, access & 0xF, access >> 4, flags) == (0, 0xFFFFF, type_, 0b1001, 0b1100)


def test_boot_params_carry_the_header_the_loader_fields_and_the_e820_map():
    image_bytes = bzimage_of(compress(vmlinux(), "gzip"))
    mem, layout, _ = boot(image_bytes, cmdline="console=ttyS0 quiet", ram=32 * MB, reserved=2 * MB)
    bp = boot_params(mem)
    end = 0x202 + image_bytes[0x201]
    header = bytearray(image_bytes[0x1F1:end])
    assert bp[0x202:0x206] == b"HdrS" and bp[0x206:0x208] == b"\x0f\x02"
    assert bp[0x210] == 0xFF                                       # type_of_loader: undefined
    assert bp[0x211] & bzimage.LOADED_HIGH and not bp[0x211] & 0xE0
    assert struct.unpack_from("<H", bp, 0x1FA)[0] == 0xFFFF        # vid_mode: normal
    # Everything else of the header is the image's own bytes.
    for off in range(0x1F1, end):
        if off not in (0x1FA, 0x1FB, 0x210, 0x211) and not 0x218 <= off < 0x220 and not 0x228 <= off < 0x22C:
            assert bp[off] == header[off - 0x1F1], hex(off)
    assert bp[:0x40] == bytes(0x40)                                # screen_info zeroed
    ptr = struct.unpack_from("<I", bp, 0x228)[0]
    assert mem.read_cstring(ptr) == b"console=ttyS0 quiet"
    assert zeropage.e820_of(bp) == [(0, 0x9FC00, 1), (0x9FC00, 0x60400, 2),
                                    (0x100000, 29 * MB, 1), (30 * MB, 2 * MB, 2)]
    assert struct.unpack_from("<I", bp, 0x1E0)[0] == 29 * 1024   # alt_mem_k
    assert struct.unpack_from("<II", bp, 0x218) == (0, 0)          # no initrd


def test_initrd_goes_as_high_as_ram_and_initrd_addr_max_allow_page_aligned():
    rd = bytes(range(256)) * 40                                    # 10240 bytes
    mem, _, _ = boot(bzimage_of(compress(vmlinux(), "gzip")), initrd=("rd", rd), ram=64 * MB)
    addr, size = struct.unpack_from("<II", boot_params(mem), 0x218)
    assert size == len(rd) and addr % 4096 == 0 and addr + size <= 64 * MB
    assert 64 * MB - (addr + size) < 4096 and mem.read(addr, size) == rd
    # A lower initrd_addr_max wins over the end of RAM.
    mem, _, _ = boot(bzimage_of(compress(vmlinux(), "gzip"), initrd_addr_max=48 * MB - 1),
                     initrd=("rd", rd), ram=64 * MB)
    addr, _ = struct.unpack_from("<II", boot_params(mem), 0x218)
    assert addr + len(rd) <= 48 * MB and 48 * MB - (addr + len(rd)) < 4096


def test_initrd_stays_out_of_the_monitor_region():
    rd = b"\x42" * 5000
    mem, _, _ = boot(bzimage_of(compress(vmlinux(), "gzip")), initrd=("rd", rd), ram=64 * MB, reserved=4 * MB)
    addr, _ = struct.unpack_from("<II", boot_params(mem), 0x218)
    assert addr + len(rd) <= 60 * MB


def test_a_vmlinux_given_directly_gets_a_setup_header_of_its_own():
    data = vmlinux()
    assert image.detect(data, "vmlinux") == "linux"
    mem, _, s = boot(data, cmdline="x=1", initrd=("rd", b"\x07" * 100))
    bp = boot_params(mem)
    assert bp[0x202:0x206] == b"HdrS" and s.eip == 0x1000000
    assert struct.unpack_from("<II", bp, 0x218)[1] == 100
    assert mem.read_cstring(struct.unpack_from("<I", bp, 0x228)[0]) == b"x=1"


def test_detection_tells_linux_from_multiboot_and_other_elfs():
    assert image.detect(bzimage_of(compress(vmlinux(), "gzip")), "bzImage") == "linux"
    with pytest.raises(GuestImageError, match="without a Multiboot 1 header"):
        image.detect(vmlinux(note=False), "plain.elf")


@pytest.mark.parametrize("kwargs,initrd,ram,pattern", [
    ({"version": 0x0207}, None, 64 * MB, r"boot protocol 2\.07 is too old"),
    ({"loadflags": 0}, None, 64 * MB, "zImage"),
    ({"xloadflags": 1}, None, 64 * MB, "64-bit"),
    ({"kind": "\x89LZO-data"}, None, 64 * MB, "LZO-compressed"),
    ({"kind": "\x28\xb5\x2f\xfd-zstd"}, None, 64 * MB, "zstd-compressed"),
    ({"kind": "garbage!"}, None, 64 * MB, "unknown format"),
    ({"cut": 100}, None, 64 * MB, "outside the"),
    ({"corrupt": True}, None, 64 * MB, "does not decompress|truncated or corrupt"),
    ({}, b"\x01" * (50 * MB), 64 * MB, "initrd rd .* does not fit"),
    ({}, b"", 64 * MB, "initrd rd: empty file"),
    ({}, None, 16 * MB, "does not fit in guest RAM"),
    ({"init_size": 80 * MB}, None, 64 * MB, "does not fit in guest RAM"),
])
def test_bad_kernels_and_initrds_are_one_clear_error(kwargs, initrd, ram, pattern):
    kind = kwargs.pop("kind", "xz")
    payload = compress(vmlinux(), kind)
    if kwargs.pop("corrupt", False):
        payload = payload[:40] + bytes(b ^ 0x5A for b in payload[40:-4]) + payload[-4:]
    data = bzimage_of(payload, **kwargs)
    with pytest.raises(GuestImageError, match=pattern):
        boot(data, initrd=None if initrd is None else ("rd", initrd), ram=ram)


def test_a_64_bit_vmlinux_and_a_too_long_command_line_are_refused():
    with pytest.raises(GuestImageError, match="64-bit"):
        boot(bzimage_of(compress(vmlinux(cls=2), "gzip")))
    with pytest.raises(GuestImageError, match="command line is 300 bytes; vmlinuz takes at most 255"):
        boot(bzimage_of(compress(vmlinux(), "gzip"), cmdline_size=255), cmdline="x" * 300)


def test_default_command_line_is_extended_or_replaced_by_the_user():
    base = linux.command_line("")
    assert base.split() == list(linux.DEFAULT_CMDLINE) and base.startswith("console=ttyS0 ")
    extended = linux.command_line("rdinit-shell quiet").split()
    assert extended == list(linux.DEFAULT_CMDLINE) + ["rdinit-shell", "quiet"]
    replaced = linux.command_line("console=tty0 lpj=1000000").split()
    assert "console=ttyS0" not in replaced and "lpj=400000" not in replaced
    assert replaced[-2:] == ["console=tty0", "lpj=1000000"] and "acpi=off" in replaced
    assert linux.command_line('nodefaults console=ttyS0 init="/bin/sh -x"') == 'console=ttyS0 init="/bin/sh -x"'


def test_a_monitors_linear_reservation_is_always_passed_as_reservetop():
    # trap and bt keep the top 4 MiB of linear space (their region at
    # 0xFFC00000): Linux must put its fixmap below, defaults or not.
    assert linux.command_line("", 4 * MB).split()[-1] == "reservetop=4M"
    assert linux.command_line("nodefaults console=ttyS0", 4 * MB) == "console=ttyS0 reservetop=4M"
    assert linux.command_line("reservetop=0x10000000", 4 * MB).split()[-1] == "reservetop=0x10000000"
    assert "reservetop" not in linux.command_line("")
    with pytest.raises(ConfigError, match=r"reservetop=1M leaves Linux the monitor's region; .* reservetop=4M"):
        linux.command_line("reservetop=1M", 4 * MB)


def test_the_pc_machines_defaults_leave_the_apics_and_pci_on():
    words = linux.command_line("", apic=True).split()
    assert "noapic" not in words and "nolapic" not in words and "acpi=off" in words
    assert "pci=off" not in words and "pci=off" in linux.command_line("").split()
    assert "pci=off" in linux.command_line("pci=off", apic=True).split()
    assert "nolapic" in linux.command_line("nolapic", apic=True).split()     # the user may still say so


def ringvisor(*args):
    return subprocess.run([sys.executable, "-m", "ringvisor", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)


@pytest.mark.parametrize("args,pattern", [
    (["run", "--initrd", "{rd}"], "--initrd goes with a Linux kernel"),
    (["run", "{k}", "--initrd", "{rd}", "--module", "{rd}"], "one --initrd"),
    (["run", "{k}", "--initrd", "{rd}", "--format", "flat"], "not --format flat"),
    (["run", "{k}", "--initrd", "/nonexistent/rd", "--engine", "soft", "--technique", "native"],
     "initrd '/nonexistent/rd' does not exist"),
    (["run", "{old}", "--engine", "soft", "--technique", "native"], "too old"),
    (["run", "{k}", "--initrd", "{big}", "--engine", "soft", "--technique", "native", "--memory", "40M"],
     "does not fit"),
    (["run", "{k}", "--initrd", "{rd}", "--technique", "pv"], "not written for ringvisor's PV ABI"),
])
def test_cli_errors_are_one_line_and_exit_2(tmp_path, args, pattern):
    k, old, rd, big = tmp_path / "vmlinuz", tmp_path / "old", tmp_path / "rd", tmp_path / "big"
    k.write_bytes(bzimage_of(compress(vmlinux(), "gzip")))
    old.write_bytes(bzimage_of(compress(vmlinux(), "gzip"), version=0x0204))
    rd.write_bytes(b"\x01" * 100)
    big.write_bytes(b"\x01" * (30 * MB))
    subst = {"k": k, "old": old, "rd": rd, "big": big}
    proc = ringvisor(*[a.format(**subst) for a in args])
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert re.search(pattern, proc.stderr), proc.stderr


@pytest.mark.skipif(not Path("/sys/module/kvm_pvm").exists(), reason="needs a PVM /dev/kvm host")
def test_linux_on_a_pvm_kvm_is_refused_in_one_line(tmp_path):
    k, rd = tmp_path / "vmlinuz", tmp_path / "rd"
    k.write_bytes(bzimage_of(compress(vmlinux(), "gzip")))
    rd.write_bytes(b"\x01" * 100)
    proc = ringvisor("run", str(k), "--initrd", str(rd), "--technique", "hw")
    assert proc.returncode == 3 and "a 32-bit Linux kernel needs 32-bit paging" in proc.stderr


needs_debian = pytest.mark.skipif(
    not (DEBIAN / "vmlinuz").is_file() or not (DEBIAN / "initrd.cpio.gz").is_file(),
    reason="Debian's kernel is not fetched: `make linux` downloads it through apt (outside `make test`)")


@needs_debian
def test_debian_kernel_is_loaded_as_the_protocol_says():
    data = (DEBIAN / "vmlinuz").read_bytes()
    header = bzimage.parse_header(data, "vmlinuz")
    assert header.version >= 0x020F and header.relocatable_kernel == 1
    rd = (DEBIAN / "initrd.cpio.gz").read_bytes()
    mem, layout, s = boot(data, linux.command_line(""), ("initrd.cpio.gz", rd), ram=64 * MB)
    # startup_32 of the decompressed vmlinux, where the ELF says: the kernel's
    # LOAD_PHYSICAL_ADDR (16 MiB), which Debian's bzImage also prefers.
    assert s.eip == header.pref_address == 0x1000000
    # The first instructions of head_32.S startup_32: mov ecx,[initial_stack]; lgdt [boot_gdt_descr].
    assert mem.read(s.eip, 1) == b"\x8b" and mem.read(s.eip + 6, 3) == b"\x0f\x01\x15"
    bp = boot_params(mem)
    assert bp[0x1F1:0x1FA] == data[0x1F1:0x1FA] and bp[0x1FC:0x210] == data[0x1FC:0x210]
    assert bp[0x22C:0x202 + data[0x201]] == data[0x22C:0x202 + data[0x201]]
    addr, size = struct.unpack_from("<II", bp, 0x218)
    assert size == len(rd) and addr % 4096 == 0 and mem.read(addr, 16) == rd[:16]
    assert addr >= 0x1000000 + header.init_size                   # above the kernel's init_size
    assert zeropage.e820_of(bp) == layout.memory_map()
    assert b"console=ttyS0" in mem.read_cstring(struct.unpack_from("<I", bp, 0x228)[0])
