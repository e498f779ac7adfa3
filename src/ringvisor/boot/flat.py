"""Raw flat binaries for tiny test payloads: the bytes are copied to a load
address and entered in 32-bit flat protected mode (paging off, interrupts
off), or in real mode as a boot sector would be."""
from __future__ import annotations

from ringvisor.boot.layout import Layout
from ringvisor.cpu_state import CpuState
from ringvisor.errors import GuestImageError

PROTECTED_LOAD_ADDRESS = 0x100000
REAL_LOAD_ADDRESS = 0x7C00


def load(data: bytes, name: str, memory, layout: Layout, real_mode: bool = False,
         address: int | None = None) -> CpuState:
    if not data:
        raise GuestImageError(f"{name}: empty file")
    if address is None:
        address = REAL_LOAD_ADDRESS if real_mode else PROTECTED_LOAD_ADDRESS
    layout.claim(address, len(data), f"flat binary {name}")
    memory.write(address, data)
    if real_mode:
        if address + len(data) > 0x10000:
            raise GuestImageError(f"{name}: a real-mode payload must fit below 64 KiB (CS=0)")
        return CpuState.real_mode(0, address, sp=REAL_LOAD_ADDRESS)
    return CpuState.protected_flat(address, esp=address)
