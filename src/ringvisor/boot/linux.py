"""The Linux/x86 32-bit boot protocol (the kernel's Documentation/arch/x86/
boot.rst): load a bzImage or a vmlinux and enter it as a boot loader would.

A bzImage's payload is decompressed here, on the host, and the resulting
vmlinux is loaded at its own physical addresses, so the guest starts in the
kernel proper (startup_32 of arch/x86/kernel/head_32.S) instead of spending
billions of instructions in the kernel's decompressor. The entry state is the
protocol's: 32-bit protected mode, paging and interrupts off, a GDT with flat
4 GiB segments at __BOOT_CS (0x10, execute/read) and __BOOT_DS (0x18,
read/write), CS = 0x10, DS = ES = SS = 0x18, ESI = the boot_params address,
EBP = EDI = EBX = 0.
"""
from __future__ import annotations

import re
import struct

from ringvisor.boot import bzimage, elf, zeropage
from ringvisor.boot.layout import PAGE, Layout
from ringvisor.cpu_state import CR0_ET, CR0_PE, CpuState, Segment, TableRegister
from ringvisor.errors import ConfigError, GuestImageError

BOOT_CS, BOOT_DS = 0x10, 0x18
GDT_ADDRESS = 0x1000
BOOT_PARAMS_ADDRESS = 0x10000
CMDLINE_ADDRESS = 0x20000
# GDT: two null slots, then flat 4 GiB code (type 0xB, execute/read, accessed) and
# data (type 0x3, read/write, accessed), G=1, D/B=1.
GDT = struct.pack("<4Q", 0, 0, 0x00CF9B000000FFFF, 0x00CF93000000FFFF)
XLF_KERNEL_64 = 0x01                 # xloadflags: a 64-bit kernel
OLD_INITRD_ADDR_MAX = 0x37FFFFFF     # boot.rst: the limit for protocols before 2.03

# What ringvisor's own command line gives Linux: the console on COM1 and
# "off" for the hardware the soft platform does not model (ACPI, PCI, the
# APICs, ISA PnP, the PnP BIOS), no crypto self-tests, no Spectre
# mitigations, and a preset loops-per-jiffy instead of calibrating the delay
# loop: with a TSC, Linux's delay loop counts TSC cycles, so lpj is the soft
# CPU's 100 MHz over Debian's HZ of 250. `nokaslr` and `edd=off` are not
# needed: the decompressor and the real-mode setup code read them, and this
# loader skips both (the kernel proper reports them as unknown).
SOFT_CPU_HZ, DEBIAN_KERNEL_HZ = 100_000_000, 250
DEFAULT_CMDLINE = ("console=ttyS0", "acpi=off", "pci=off", "noapic", "nolapic", "noisapnp",
                   "pnpbios=off", "cryptomgr.notests", "mitigations=off", "no_timer_check",
                   f"lpj={SOFT_CPU_HZ // DEBIAN_KERNEL_HZ}")
# On the pc machine (local and I/O APICs, MP and ACPI tables, the 440FX on
# PCI) the APICs and the PCI bus are there: Linux finds the APICs through
# the MP table and the bus through configuration mechanism #1 (ACPI stays
# off: its AML interpreter costs boot time and gives the soft platform
# nothing more).
APIC_OFF = ("noapic", "nolapic")
PC_MACHINE_HAS = APIC_OFF + ("pci=off",)   # defaults the pc machine leaves out
NO_DEFAULTS = "nodefaults"           # a user word that drops DEFAULT_CMDLINE
RESERVETOP = "reservetop"            # linear space at the top Linux leaves alone
_WORD = re.compile(r'(?:[^\s"]+|"[^"]*")+')


def _key(word: str) -> str:
    return word.split("=", 1)[0]


def command_line(user: str, reserved_linear: int = 0, apic: bool = False) -> str:
    """ringvisor's defaults extended by the user's words: a parameter the
    user gives (`console=tty0`, `lpj=1000000`, `noapic`) replaces the default
    of the same name, and the word `nodefaults` drops every default. With
    `apic` (the pc machine) the defaults leave the APICs and PCI on.

    `reserved_linear` (the top of the linear address space a monitor keeps)
    is not a default but a fact of the machine: `reservetop=` is added even
    with `nodefaults`, and a user's smaller value is refused. Linux then
    puts its fixmap, and so its whole kernel address space, below it
    (arch/x86/mm/pgtable.c, reserve_top_address(), made for hypervisors)."""
    words = _WORD.findall(user)
    if NO_DEFAULTS in words:
        words = [w for w in words if w != NO_DEFAULTS]
    else:
        named = {_key(w) for w in words}
        defaults = [w for w in DEFAULT_CMDLINE if not (apic and w in PC_MACHINE_HAS)]
        words = [w for w in defaults if _key(w) not in named] + words
    if reserved_linear:
        given = [w for w in words if _key(w) == RESERVETOP]
        if not given:
            words.append(f"{RESERVETOP}={reserved_linear >> 20}M")
        elif _memparse(given[-1].partition("=")[2]) < reserved_linear:
            raise ConfigError(f"{given[-1]} leaves Linux the monitor's region; this technique needs "
                              f"{RESERVETOP}={reserved_linear >> 20}M or more (or leave it out)")
    return " ".join(words)


def _memparse(text: str) -> int:
    """The kernel's memparse(): a number (0x for hex) with an optional K, M or G."""
    m = re.fullmatch(r"(0[xX][0-9a-fA-F]+|\d+)([KkMmGg]?)", text)
    if not m:
        return 0
    return int(m.group(1), 0) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2).lower()]


def is_vmlinux(data: bytes) -> bool:
    """An ELF that is a Linux kernel: it carries the kernel's "Linux" ELF
    notes, or at least its version banner."""
    if not elf.is_elf(data):
        return False
    return _has_linux_note(data) or b"Linux version " in data


def _has_linux_note(data: bytes) -> bool:
    if len(data) < 52 or data[4] != elf.ELFCLASS32:
        return False
    phoff, = struct.unpack_from("<I", data, 28)
    phentsize, phnum = struct.unpack_from("<HH", data, 42)
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + 32 > len(data):
            return False
        p_type, offset, _v, _p, filesz = struct.unpack_from("<5I", data, off)
        if p_type != 4:                          # PT_NOTE
            continue
        pos, end = offset, min(offset + filesz, len(data))
        while pos + 12 <= end:
            namesz, descsz, _type = struct.unpack_from("<3I", data, pos)
            if data[pos + 12:pos + 12 + namesz].rstrip(b"\0") == b"Linux":
                return True
            pos += 12 + (namesz + 3 & ~3) + (descsz + 3 & ~3)
    return False


def _synthetic_header(vmlinux: elf.ElfImage) -> bytes:
    """A setup header for a vmlinux given without its bzImage: the fields
    the kernel reads at run time, as a 2.15 bzImage would carry them."""
    start = min(s.paddr for s in vmlinux.segments)
    raw = bytearray(0x26C - bzimage.HEADER_OFFSET)
    def put(name: str, value) -> None:
        offset, fmt = bzimage.FIELD[name]
        struct.pack_into("<" + fmt, raw, offset - bzimage.HEADER_OFFSET, value)
    for name, value in (("boot_flag", bzimage.BOOT_FLAG), ("jump", 0x6AEB), ("header", bzimage.HDRS),
                        ("version", 0x020F), ("loadflags", bzimage.LOADED_HIGH),
                        ("initrd_addr_max", OLD_INITRD_ADDR_MAX), ("kernel_alignment", PAGE),
                        ("cmdline_size", 2047), ("pref_address", start),
                        ("init_size", vmlinux.end - start)):
        put(name, value)
    return bytes(raw)


def _kernel(data: bytes, name: str) -> tuple[bytes, bytes, int, int]:
    """(setup header bytes, vmlinux, initrd_addr_max, cmdline_size)."""
    if bzimage.is_bzimage(data):
        header = bzimage.parse_header(data, name)
        if header.fields.get("xloadflags", 0) & XLF_KERNEL_64:
            raise GuestImageError(f"{name}: a 64-bit (x86-64) kernel; ringvisor boots i386 kernels")
        return (header.raw, bzimage.payload(data, header, name), header.initrd_addr_max,
                header.cmdline_size)
    if is_vmlinux(data):
        return b"", data, OLD_INITRD_ADDR_MAX, 2047
    raise GuestImageError(f"{name}: not a Linux kernel (neither a bzImage nor a vmlinux ELF)")


def _field(setup_header: bytes, name: str) -> int:
    """A setup header field, 0 where the header is too old to have it."""
    offset, fmt = bzimage.FIELD[name]
    offset -= bzimage.HEADER_OFFSET
    if offset + struct.calcsize("<" + fmt) > len(setup_header):
        return 0
    return struct.unpack_from("<" + fmt, setup_header, offset)[0]


def _load_vmlinux(vmlinux: bytes, name: str, memory, layout: Layout, init_size: int) -> elf.ElfImage:
    if len(vmlinux) > 4 and vmlinux[:4] == elf.ELF_MAGIC and vmlinux[4] == elf.ELFCLASS64:
        raise GuestImageError(f"{name}: a 64-bit (x86-64) kernel; ringvisor boots i386 kernels")
    if not elf.is_elf(vmlinux):
        raise GuestImageError(f"{name}: the decompressed kernel is not an ELF")
    image = elf.parse_elf32(vmlinux, name)
    start = min(s.paddr for s in image.segments)
    # The kernel needs init_size bytes from its start before it reads the
    # memory map (boot.rst), more than its image where its bss is large.
    end = max(image.end, start + init_size)
    layout.claim(start, end - start, f"Linux kernel {name} (with its init_size)")
    for seg in image.segments:
        memory.write(seg.paddr, seg.data)
        memory.fill(seg.paddr + len(seg.data), seg.memsz - len(seg.data))
    return image


def _place_initrd(initrd: bytes, name: str, memory, layout: Layout, addr_max: int) -> tuple[int, int]:
    """As high as possible below initrd_addr_max and the end of RAM, page aligned (boot.rst)."""
    if not initrd:
        raise GuestImageError(f"initrd {name}: empty file")
    top = min(addr_max + 1, layout.usable_end)
    address = (top - len(initrd)) & ~(PAGE - 1)
    floor = layout.highest_end()
    if address < floor:
        raise GuestImageError(
            f"initrd {name} ({len(initrd)} bytes) does not fit between the kernel's end ({floor:#x}) "
            f"and {top:#x} (the end of RAM or the kernel's initrd_addr_max); try a larger --memory")
    layout.claim(address, len(initrd), f"initrd {name}")
    memory.write(address, initrd)
    return address, len(initrd)


def load(data: bytes, name: str, memory, layout: Layout, cmdline: str = "",
         initrd: tuple[str, bytes] | None = None) -> CpuState:
    """Load the kernel in `data` (and the initrd, as (name, bytes)) with the
    command line `cmdline` as given (see command_line() for the defaults);
    return the state to enter it in."""
    setup_header, vmlinux, initrd_addr_max, cmdline_size = _kernel(data, name)
    image = _load_vmlinux(vmlinux, name, memory, layout, _field(setup_header, "init_size"))
    if not setup_header:
        setup_header = _synthetic_header(image)
    encoded = cmdline.encode()
    if len(encoded) > cmdline_size:
        raise GuestImageError(f"the kernel command line is {len(encoded)} bytes; {name} takes at most "
                              f"{cmdline_size}")
    ramdisk = (0, 0)
    if initrd is not None:
        ramdisk = _place_initrd(initrd[1], initrd[0], memory, layout, initrd_addr_max)

    layout.claim(GDT_ADDRESS, len(GDT), "boot GDT")
    memory.write(GDT_ADDRESS, GDT)
    layout.claim(CMDLINE_ADDRESS, cmdline_size + 1, "kernel command line")
    memory.fill(CMDLINE_ADDRESS, cmdline_size + 1)
    memory.write(CMDLINE_ADDRESS, encoded + b"\0")
    layout.claim(BOOT_PARAMS_ADDRESS, zeropage.SIZE, "boot_params")
    memory.write(BOOT_PARAMS_ADDRESS, zeropage.build(setup_header, CMDLINE_ADDRESS,
                                                     layout.memory_map(), ramdisk))
    return entry_state(image.entry)


def entry_state(entry: int) -> CpuState:
    """The protocol's entry: CS = __BOOT_CS, the data segments __BOOT_DS,
    ESI = boot_params, EBP = EDI = EBX = 0, interrupts and paging off."""
    segs = {name: Segment.flat32(BOOT_DS, code=False) for name in ("ds", "es", "ss", "fs", "gs")}
    return CpuState(eip=entry, esi=BOOT_PARAMS_ADDRESS, cs=Segment.flat32(BOOT_CS, code=True), **segs,
                    gdt=TableRegister(GDT_ADDRESS, len(GDT) - 1), cr0=CR0_PE | CR0_ET)
