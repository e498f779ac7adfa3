"""The Multiboot 1 and flat loaders, on images built here byte by byte."""
from __future__ import annotations

import struct

import pytest

from ringvisor.boot import flat, image, multiboot
from ringvisor.boot.layout import Layout
from ringvisor.errors import GuestImageError
from ringvisor.machine.memory import GuestMemory

MB = 1 << 20


def mb_header(flags=0x3, extra=b""):
    magic = multiboot.HEADER_MAGIC
    return struct.pack("<III", magic, flags, (-(magic + flags)) & 0xFFFFFFFF) + extra


def elf32(segments, entry=0x100000, machine=3, cls=1, e_type=2):
    """An ELF executable with the given (paddr, bytes, memsz) PT_LOAD segments."""
    phoff, phnum = 52, len(segments)
    data_off = phoff + 32 * phnum
    ehdr = struct.pack("<16sHHIIIIIHHHHHH", b"\x7fELF" + bytes([cls, 1, 1]) + bytes(9), e_type, machine, 1,
                       entry, phoff, 0, 0, 52, 32, phnum, 40, 0, 0)
    phdrs, blobs = b"", b""
    for paddr, blob, memsz in segments:
        phdrs += struct.pack("<IIIIIIII", 1, data_off + len(blobs), paddr, paddr, len(blob), memsz, 7, 4096)
        blobs += blob
    return ehdr + phdrs + blobs


def boot(data, cmdline="", modules=(), ram=16 * MB, reserved=0):
    mem = GuestMemory(ram)
    layout = Layout(ram, reserved)
    state = multiboot.load(data, "k.elf", mem, layout, cmdline, modules)
    return mem, layout, state


def test_elf_kernel_is_loaded_and_entered_as_multiboot_promises():
    code = mb_header() + b"\x90" * 20
    mem, _, state = boot(elf32([(0x100000, code, 0x3000)], entry=0x10000C), cmdline="a=1 b")
    assert mem.read(0x100000, len(code)) == code
    assert mem.read(0x100000 + len(code), 0x3000 - len(code)) == bytes(0x3000 - len(code))  # bss zeroed
    assert (state.eip, state.eax, state.ebx) == (0x10000C, 0x2BADB002, multiboot.INFO_ADDRESS)
    assert state.protected and state.cs.db and state.cs.limit == 0xFFFFFFFF and not state.eflags & 0x200
    assert state.cr0 & 0x80000001 == 1                                      # PE on, paging off
    flags, lower, upper = struct.unpack("<III", mem.read(multiboot.INFO_ADDRESS, 12))
    assert flags == 0x245 and lower == 639 and upper == 15 * 1024
    cmd = mem.read_u32(multiboot.INFO_ADDRESS + 16)
    assert mem.read_cstring(cmd) == b"k.elf a=1 b"
    assert mem.read_cstring(mem.read_u32(multiboot.INFO_ADDRESS + 64)) == b"ringvisor"


def test_memory_map_withholds_the_monitor_region():
    mem, layout, _ = boot(elf32([(0x100000, mb_header(), 16)]), ram=32 * MB, reserved=4 * MB)
    length, addr = struct.unpack("<II", mem.read(multiboot.INFO_ADDRESS + 44, 8))
    entries = [struct.unpack_from("<IQQI", mem.read(addr, length), off) for off in range(0, length, 24)]
    assert [(b, l, t) for _, b, l, t in entries] == [
        (0, 0x9FC00, 1), (0x9FC00, 0x60400, 2), (MB, 27 * MB, 1), (28 * MB, 4 * MB, 2)]
    assert struct.unpack("<I", mem.read(multiboot.INFO_ADDRESS + 8, 4))[0] == 27 * 1024


def test_modules_are_page_aligned_after_the_kernel_with_their_command_lines():
    kernel = elf32([(0x100000, mb_header(), 0x1234)])
    mods = (multiboot.Module(b"first module", "initrd.img root=1"), multiboot.Module(b"x" * 5000, "two"))
    mem, _, _ = boot(kernel, modules=mods)
    count, table = struct.unpack("<II", mem.read(multiboot.INFO_ADDRESS + 20, 8))
    assert count == 2
    (s0, e0, c0, _), (s1, e1, c1, _) = (struct.unpack_from("<IIII", mem.read(table, 32), i) for i in (0, 16))
    assert s0 == 0x102000 and e0 - s0 == 12 and mem.read(s0, 12) == b"first module"
    assert s1 % 4096 == 0 and s1 >= e0 and e1 - s1 == 5000
    assert mem.read_cstring(c0) == b"initrd.img root=1" and mem.read_cstring(c1) == b"two"


def test_aout_kludge_header_loads_a_raw_image():
    load_addr = 0x200000
    hdr = mb_header(0x10003, struct.pack("<5I", load_addr, load_addr, 0, load_addr + 0x2000, load_addr + 32))
    data = hdr + b"\xf4" * 40
    mem, _, state = boot(data)
    assert mem.read(load_addr, len(data)) == data and state.eip == load_addr + 32


@pytest.mark.parametrize("data,message", [
    (elf32([(0x100000, b"\x90" * 16, 16)]), "no Multiboot 1 header"),
    (elf32([(0x100000, mb_header(0x7), 16)]), "requires a video mode"),
    (elf32([(0x100000, mb_header(), 16)], machine=62), "not i386"),
    (mb_header() + elf32([(0x100000, b"", 16)])[12:], "not an ELF"),
    (elf32([(15 * MB, mb_header(), 2 * MB)]), "does not fit"),
    (elf32([(0x100000, mb_header(), 16), (0x100008, b"x", 16)]), "overlaps kernel"),
    (elf32([(0xA0000, mb_header(), 16)]), "legacy hole"),
])
def test_bad_kernels_are_refused_with_a_clear_message(data, message):
    with pytest.raises(GuestImageError, match=message):
        boot(data)


@pytest.mark.parametrize("load", [0x8000, 0x9000, 0x1000])
def test_a_kernel_loaded_low_gets_its_information_elsewhere(load):
    """The info block goes where the kernel leaves room (it used to claim
    0x9000-0x9F000 and refuse every kernel loaded there)."""
    code = mb_header() + b"\x90" * 20
    mem, layout, state = boot(elf32([(load, code, 0x2000)], entry=load + 12), cmdline="low=1")
    assert state.eip == load + 12 and mem.read(load, len(code)) == code
    info = state.ebx
    assert not load <= info < load + 0x2000 and info < 0xA0000
    assert mem.read_cstring(mem.read_u32(info + 16)) == b"k.elf low=1"
    assert mem.read_cstring(mem.read_u32(info + 64)) == b"ringvisor"


def test_information_goes_above_the_kernel_when_low_memory_is_taken():
    code = mb_header() + b"\x90" * 20
    mem, _, state = boot(elf32([(0x1000, code, 0x9EC00)], entry=0x100C), cmdline="x")  # to 0x9FC00
    assert state.ebx >= 0x100000
    assert mem.read_cstring(mem.read_u32(state.ebx + 16)) == b"k.elf x"


def test_module_that_does_not_fit_is_refused():
    with pytest.raises(GuestImageError, match="module 0 .*does not fit"):
        boot(elf32([(0x100000, mb_header(), 16)]), modules=(multiboot.Module(b"m" * (16 * MB), "big"),))


def test_flat_binaries_in_protected_and_real_mode():
    mem, layout = GuestMemory(2 * MB), Layout(2 * MB)
    state = flat.load(b"\xf4", "p.bin", mem, layout)
    assert state.eip == 0x100000 and state.protected and mem.read_u8(0x100000) == 0xF4
    state = flat.load(b"\xeb\xfe", "b.bin", mem, Layout(2 * MB), real_mode=True)
    assert (state.cs.selector, state.eip, state.protected) == (0, 0x7C00, False)


@pytest.mark.parametrize("name,data,message", [
    ("k.elf", elf32([(0x100000, b"\x90", 1)], cls=2), "64-bit ELF"),
    ("k.elf", elf32([(0x100000, b"\x90", 1)]), "ELF file without a Multiboot 1 header"),
    ("k.img", b"\x00" * 100, "neither a Multiboot ELF kernel nor a flat binary"),
    ("k.bin", b"", "empty file"),
])
def test_image_detection_errors(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(GuestImageError, match=message):
        image.load(str(path), GuestMemory(2 * MB), Layout(2 * MB))


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(GuestImageError, match="does not exist"):
        image.load(str(tmp_path / "nope.elf"), GuestMemory(2 * MB), Layout(2 * MB))
    with pytest.raises(GuestImageError, match="is a directory"):
        image.load(str(tmp_path), GuestMemory(2 * MB), Layout(2 * MB))
