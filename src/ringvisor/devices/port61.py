"""System control port B (I/O port 0x61) of the PC/AT: the wiring between
the CPU and the 8254's channel 2 (the speaker and the timer every PC kernel
calibrates its clocks with).

    bit 0  R/W  GATE2: channel 2's gate
    bit 1  R/W  SPKR: speaker data enable (OUT2 reaches the speaker)
    bit 2  R/W  parity check disable
    bit 3  R/W  channel check (IOCHK#) disable
    bit 4  R    refresh request: toggles every 15.085 us (DRAM refresh, a delay source)
    bit 5  R    OUT2: channel 2's output
    bit 6  R    IOCHK# error seen (never here: nothing raises it)
    bit 7  R    memory parity error seen (never here)

The speaker makes no sound: SPKR is stored and read back.
"""
from __future__ import annotations

from typing import Callable

from ringvisor.devices.pit8254 import Pit8254

PORT = 0x61
GATE2, SPEAKER, PARITY_DISABLE, IOCHK_DISABLE = 0x01, 0x02, 0x04, 0x08
REFRESH, OUT2 = 0x10, 0x20
WRITABLE = GATE2 | SPEAKER | PARITY_DISABLE | IOCHK_DISABLE
REFRESH_PERIOD_NS = 15_085          # one refresh request per 15.085 us (18 PIT input clocks)


class Port61:
    def __init__(self, pit: Pit8254, now_ns: Callable[[], int]):
        """`now_ns` is virtual time, brought up to date by the caller (the
        PIT must have been advanced to it before a read)."""
        self.pit, self.now_ns = pit, now_ns
        self.value = 0
        pit.set_gate(2, False)

    def io_read(self, offset: int, size: int) -> int:
        refresh = REFRESH if (self.now_ns() // REFRESH_PERIOD_NS) & 1 else 0
        out2 = OUT2 if self.pit.out(2) else 0
        byte = self.value | refresh | out2
        return byte | (0xFFFFFF00 if size == 4 else 0xFF00 if size == 2 else 0)

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.value = value & WRITABLE
        self.pit.set_gate(2, bool(value & GATE2))
