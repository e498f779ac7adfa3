"""The two ports through which PC software resets the machine.

- 0xCF9, the chipset's Reset Control Register (Intel ICH/PCH datasheets;
  also the FADT's RESET_REG with value 0x06): bit 1 SYS_RST (1: reset the
  whole platform, 0: only the CPU), bit 2 RST_CPU (a 0-to-1 change starts
  the reset), bit 3 FULL_RST (power-cycle as well). Linux's `reboot=pci`
  writes 0x02 then 0x06; ACPI reset writes 0x06.
- 0x92, System Control Port A (PS/2 "fast" controls): bit 0 a fast CPU
  reset on its 0-to-1 change, bit 1 the A20 gate (stored and read back: the
  soft CPU has no A20 mask).

Neither resets anything by itself: `on_reset(kind)` tells the machine, with
kind "hard", "full", "cpu" (0xCF9) or "fast" (0x92), which ends or restarts
the run.
"""
from __future__ import annotations

from typing import Callable

RESET_CONTROL_PORT = 0xCF9
PORT_A = 0x92
SYS_RST, RST_CPU, FULL_RST = 1 << 1, 1 << 2, 1 << 3
FAST_RESET, A20_GATE = 1 << 0, 1 << 1
# How a run's end names each kind of reset.
DESCRIPTIONS = {"hard": "port 0xCF9 hard reset", "full": "port 0xCF9 full reset",
                "cpu": "port 0xCF9 CPU reset", "fast": "port 0x92 fast reset"}


def _kind(value: int) -> str:
    if value & FULL_RST:
        return "full"
    return "hard" if value & SYS_RST else "cpu"


class ResetControl:
    """0xCF9: one byte register."""

    def __init__(self, on_reset: Callable[[str], None]):
        self.on_reset = on_reset
        self.value = 0
        self.resets: list[str] = []

    def io_read(self, offset: int, size: int) -> int:
        return self.value if size == 1 else self.value | ((1 << (8 * size)) - 0x100)

    def io_write(self, offset: int, size: int, value: int) -> None:
        value &= SYS_RST | RST_CPU | FULL_RST
        rose = value & RST_CPU and not self.value & RST_CPU
        self.value = value & (SYS_RST | FULL_RST)    # RST_CPU reads back 0 once the reset began
        if rose:
            kind = _kind(value)
            self.resets.append(kind)
            self.on_reset(kind)


class SystemControlPortA:
    """0x92: fast reset and the A20 gate."""

    def __init__(self, on_reset: Callable[[str], None]):
        self.on_reset = on_reset
        self.value = A20_GATE                       # A20 enabled, as after firmware
        self.resets: list[str] = []

    def io_read(self, offset: int, size: int) -> int:
        return self.value if size == 1 else self.value | ((1 << (8 * size)) - 0x100)

    def io_write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        rose = value & FAST_RESET and not self.value & FAST_RESET
        self.value = value
        if rose:
            self.resets.append("fast")
            self.on_reset("fast")


def register(ports, on_reset: Callable[[str], None]) -> tuple[ResetControl, SystemControlPortA]:
    cf9, port_a = ResetControl(on_reset), SystemControlPortA(on_reset)
    ports.register(RESET_CONTROL_PORT, 1, cf9, "reset control (0xCF9)")
    ports.register(PORT_A, 1, port_a, "system control port A")
    return cf9, port_a
