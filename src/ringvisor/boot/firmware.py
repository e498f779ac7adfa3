"""Booting a firmware ROM (`ringvisor run --bios ROM`): the ROM mapped as a
PC maps its BIOS flash, and the CPU at the reset vector as after RESET.

Where the ROM appears (as QEMU's pc machines map `-bios`, and as the
chipset decodes the firmware hub on a real PC):
- the whole ROM at the top of 4 GiB, ending at 0xFFFFFFFF: the CPU's first
  fetch after RESET is at 0xFFFFFFF0 (CS.base 0xFFFF0000 + EIP 0xFFF0,
  SDM vol. 3A 9.1.4), so the reset vector is the ROM's last 16 bytes;
- its last 128 KiB (the whole ROM if it is 64 KiB) below 1 MiB, ending at
  0xFFFFF: 0xE0000 (or 0xF0000)-0xFFFFF, the legacy BIOS area real-mode
  code reaches once a far jump loads CS the real-mode way (base = selector
  * 16; SeaBIOS's reset vector jumps to F000:E05B).

On the pc machine the low copy is what the chipset decodes on PCI for
0xE0000-0xFFFFF while its PAM registers send reads there (their reset
state): read-only, with the RAM beneath it reached once the firmware sets
the PAM to shadow itself (devices/pam.py). Without a chipset (the isa
machine) the low copy is RAM, writable from the start, as on QEMU's isapc
machine. The high alias is read-only (devices/rom.py).

Sizes: a multiple of 64 KiB (what QEMU accepts for -bios, and the granule
of the legacy area's 0xE0000/0xF0000 segments), at most 16 MiB: the
firmware hub decode window 0xFF000000-0xFFFFFFFF, which also keeps the
alias clear of the I/O APIC (0xFEC00000), HPET and local APICs (0xFEE00000).
"""
from __future__ import annotations

import os

from ringvisor.boot.image import read_file
from ringvisor.cpu_state import CpuState
from ringvisor.devices.rom import Rom
from ringvisor.errors import GuestImageError

GRANULE = 64 << 10
MAX_SIZE = 16 << 20
LEGACY_WINDOW = 128 << 10            # at most this much appears below 1 MiB
LEGACY_END = 0x100000
TOP_OF_4G = 1 << 32


def check(data: bytes, name: str) -> None:
    if not data:
        raise GuestImageError(f"--bios {name}: empty file")
    if len(data) % GRANULE:
        raise GuestImageError(f"--bios {name}: {len(data):,} bytes is not a multiple of 64 KiB "
                              "(a BIOS ROM image is 64 KiB, 128 KiB, 256 KiB, ... up to 16 MiB)")
    if len(data) > MAX_SIZE:
        raise GuestImageError(f"--bios {name}: {len(data) >> 20} MiB is above the 16 MiB a PC "
                              "decodes for its firmware (0xFF000000-0xFFFFFFFF)")


def low_window(size: int) -> tuple[int, int]:
    """(start, length) of the ROM's tail that appears below 1 MiB."""
    length = min(size, LEGACY_WINDOW)
    return LEGACY_END - length, length


def high_base(size: int) -> int:
    return TOP_OF_4G - size


def load(path: str, memory, mmio, signature: int, pam=None) -> CpuState:
    """Map the ROM at `path` and return the CPU's state after RESET, EDX =
    `signature` (the CPU's CPUID.1:EAX). `pam` (devices/pam.py), the
    chipset's map of the legacy BIOS area, if the machine has one."""
    data = read_file(path, "--bios ROM")
    name = os.path.basename(path)
    check(data, name)
    start, length = low_window(len(data))
    if pam is not None:
        pam.install_rom(start, data[-length:])
    else:
        memory.write(start, data[-length:])
    mmio.register(high_base(len(data)), len(data), Rom(data), f"firmware ROM {name} (high alias)")
    return CpuState.after_reset(signature)
