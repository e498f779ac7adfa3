"""The debug-exit port: a guest ends the run with an exit status.

A write of value v (1, 2 or 4 bytes, default port 0xF4) asks the machine to
stop with exit status v, through the injected `on_exit(status)`. Reads return
all ones (nothing to read; the port looks absent to probes).

Unlike QEMU's isa-debug-exit, which exits with (v << 1) | 1 so that a guest can
never produce status 0, ringvisor exits with v itself: `out 0xf4, 0` is a
successful run. Test kernels written for QEMU must account for that.
"""
from __future__ import annotations

from typing import Callable

PORT = 0xF4
MASKS = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}


class DebugExit:
    def __init__(self, on_exit: Callable[[int], None]):
        self.on_exit = on_exit
        self.status: int | None = None   # the last status requested

    def io_read(self, offset: int, size: int) -> int:
        return MASKS.get(size, 0xFF)

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.status = value & MASKS.get(size, 0xFF)
        # on_exit may raise to unwind the vCPU loop: let it propagate.
        self.on_exit(self.status)
