"""Recognise a guest image and load it with the right loader."""
from __future__ import annotations

import os

from ringvisor.boot import bzimage, elf, flat, linux, multiboot
from ringvisor.boot.layout import Layout
from ringvisor.cpu_state import CpuState
from ringvisor.errors import GuestImageError

FORMATS = ("auto", "multiboot", "linux", "flat", "flat16")


def read_file(path: str, what: str = "kernel") -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise GuestImageError(f"{what} {path!r} does not exist") from None
    except IsADirectoryError:
        raise GuestImageError(f"{what} {path!r} is a directory") from None
    except OSError as e:
        raise GuestImageError(f"cannot read {what} {path!r}: {e.strerror}") from None


def detect(data: bytes, path: str) -> str:
    if not data:
        raise GuestImageError(f"{path}: empty file")
    if multiboot.find_header(data) is not None:
        return "multiboot"
    if bzimage.is_bzimage(data) or linux.is_vmlinux(data):
        return "linux"
    if elf.is_elf(data):
        if len(data) > 4 and data[4] == elf.ELFCLASS64:
            raise GuestImageError(f"{path}: a 64-bit ELF; ringvisor boots 32-bit (i386) Multiboot kernels")
        raise GuestImageError(f"{path}: an ELF file without a Multiboot 1 header; "
                              "ringvisor boots Multiboot kernels (or flat binaries with --format flat)")
    if path.endswith(".bin"):
        return "flat"
    raise GuestImageError(f"{path}: neither a Multiboot ELF kernel nor a flat binary "
                          "(name it *.bin or pass --format flat to load raw bytes)")


def load(path: str, memory, layout: Layout, cmdline: str = "", modules: tuple[str, ...] = (),
         fmt: str = "auto", reserved_linear: int = 0, apic: bool = False) -> CpuState:
    """`reserved_linear`: bytes at the top of the linear address space the
    guest must leave alone (a monitor's region); kernels that can be told so
    are told (Linux: reservetop=), the others are assumed not to go there.
    `apic`: the machine has local and I/O APICs (Linux's defaults leave them on)."""
    data = read_file(path)
    name = os.path.basename(path)
    kind = detect(data, path) if fmt == "auto" else fmt
    if kind == "multiboot":
        mods = tuple(multiboot.Module(read_file(m.split()[0], "module"), m) for m in modules)
        return multiboot.load(data, name, memory, layout, cmdline, mods)
    if kind == "linux":
        # A Linux kernel's one module is its initrd (ringvisor run --initrd).
        if len(modules) > 1:
            raise GuestImageError("a Linux kernel takes one initrd (--initrd), not several modules")
        initrd = (modules[0], read_file(modules[0], "initrd")) if modules else None
        return linux.load(data, name, memory, layout, linux.command_line(cmdline, reserved_linear, apic), initrd)
    if modules or cmdline:
        raise GuestImageError("a flat binary takes no command line or modules")
    return flat.load(data, name, memory, layout, real_mode=(kind == "flat16"))
