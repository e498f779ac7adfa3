"""The PC's pair of Intel 8259A programmable interrupt controllers.

Master at 0x20-0x21 (IRQ 0-7), slave at 0xA0-0xA1 (IRQ 8-15) cascaded into the
master's IR2, and the ELCR at 0x4D0-0x4D1 that makes single lines
level-triggered. Used by the soft engine, which has no in-kernel irqchip.

CPU side: `pending()` is the master's INT pin; `acknowledge()` is the INTA
cycle: it returns the vector and moves the request from IRR to ISR (unless
auto-EOI). Device side: `set_irq(line, level)`, or `irq_line(n)` for a
device's injected `irq(level)` callable.

Choices where the datasheet leaves room:
- Edge-triggered requests are latched in IRR on the rising edge and stay there
  until acknowledged, even if the line falls first (devices here pulse).
- A request that disappears before INTA (a level line dropped) yields the
  spurious vector of IR7 (IRQ 7, or IRQ 15 with the master's IR2 in service),
  with no ISR bit set on the chip that answered spuriously.
- The cascade is wired to IR2 as on every PC; ICW3 is stored and read back
  only as part of the init sequence. ICW4 8080 mode is not modelled.
- `on_interrupt()` (optional) is called when INT rises, so a machine can wake
  a halted CPU. Devices may raise lines from other threads: one lock guards
  the pair.
"""
from __future__ import annotations

import threading
from collections import Counter
from enum import IntFlag
from typing import Callable

from ringvisor.devices.byteio import read_bytes, write_bytes

MASTER_BASE, SLAVE_BASE, ELCR_BASE = 0x20, 0xA0, 0x4D0
CASCADE_IR = 2
# IRQ 0, 1, 2 (timer, keyboard, cascade) and 8, 13 (RTC, FPU) are edge only.
ELCR_WRITABLE = (0xF8, 0xDE)


class ICW1(IntFlag):
    IC4 = 0x01     # ICW4 follows
    SNGL = 0x02    # single PIC, no ICW3
    ADI = 0x04     # call address interval (8080 only)
    LTIM = 0x08    # level-triggered mode for all lines
    INIT = 0x10    # marks ICW1 on the command port


class ICW4(IntFlag):
    UPM = 0x01     # 8086 mode
    AEOI = 0x02    # automatic end of interrupt
    MS = 0x04      # buffered mode master/slave
    BUF = 0x08
    SFNM = 0x10    # special fully nested mode


# OCW2: bits 7:5 select the command, bits 2:0 the level for specific ones.
OCW2_ROTATE_AEOI_CLEAR = 0x00
OCW2_NONSPECIFIC_EOI = 0x20
OCW2_NOP = 0x40
OCW2_SPECIFIC_EOI = 0x60
OCW2_ROTATE_AEOI_SET = 0x80
OCW2_ROTATE_NONSPECIFIC_EOI = 0xA0
OCW2_SET_PRIORITY = 0xC0
OCW2_ROTATE_SPECIFIC_EOI = 0xE0

OCW3_MARK = 0x08   # bits 4:3 = 01 on the command port
OCW3_POLL = 0x04
OCW3_READ_REG = 0x02   # with RIS: 1 = ISR, 0 = IRR
OCW3_RIS = 0x01
OCW3_ESMM = 0x40
OCW3_SMM = 0x20


class Pic8259:
    """One 8259A; its ports are offsets 0 (command) and 1 (data)."""

    def __init__(self, pair: "PicPair", name: str, is_master: bool):
        self.pair, self.name, self.is_master = pair, name, is_master
        self.elcr = 0
        self.lines = 0         # current level of the IR inputs
        self.reset()

    def reset(self, level_triggered: bool = False) -> None:
        """What ICW1 does: forget edges (a line already high must go low and
        high again), clear masks and modes, make IR7 the lowest priority."""
        self.level_triggered = level_triggered
        self.irr = self.lines & self.level_mask()
        self.isr = 0
        self.imr = 0
        self.priority_add = 0   # the IR with highest priority (IR7 lowest)
        self.vector_base = 0
        self.init_step = 0      # 0 = operational; 2, 3, 4 = ICW expected next
        self.needs_icw3 = False
        self.needs_icw4 = False
        self.icw3 = 0
        self.auto_eoi = False
        self.rotate_on_aeoi = False
        self.special_fully_nested = False
        self.special_mask = False
        self.read_isr = False
        self.poll = False

    def level_mask(self) -> int:
        return 0xFF if self.level_triggered else self.elcr

    # -- priorities ----------------------------------------------------------------
    def _priority(self, mask: int) -> int:
        """Rank (0 = highest) of the best bit in `mask`, 8 if none."""
        for rank in range(8):
            if mask & (1 << ((rank + self.priority_add) & 7)):
                return rank
        return 8

    def highest_request(self) -> int | None:
        """The IR that would be delivered now, or None."""
        rank = self._priority(self.irr & ~self.imr)
        if rank == 8:
            return None
        in_service = self.isr
        if self.special_mask:
            in_service &= ~self.imr
        if self.special_fully_nested and self.is_master:
            in_service &= ~(1 << CASCADE_IR)   # more slave IRQs may nest
        if rank < self._priority(in_service):
            return (rank + self.priority_add) & 7
        return None

    # -- request lines -------------------------------------------------------------
    def set_line(self, ir: int, level: int) -> None:
        bit = 1 << ir
        if self.level_mask() & bit:
            self.irr = self.irr | bit if level else self.irr & ~bit
        elif level and not self.lines & bit:
            self.irr |= bit                     # rising edge latched
        self.lines = self.lines | bit if level else self.lines & ~bit

    def ack(self, ir: int) -> None:
        bit = 1 << ir
        if not self.level_mask() & bit:
            self.irr &= ~bit                    # the edge is consumed
        if self.auto_eoi:
            if self.rotate_on_aeoi:
                self.priority_add = (ir + 1) & 7
        else:
            self.isr |= bit

    def _eoi(self, ir: int | None, rotate: bool) -> None:
        if ir is None:
            rank = self._priority(self.isr)
            if rank == 8:
                return
            ir = (rank + self.priority_add) & 7
        self.isr &= ~(1 << ir)
        if rotate:
            self.priority_add = (ir + 1) & 7

    # -- register interface (called under the pair lock) ---------------------------
    def read_reg(self, reg: int) -> int:
        if reg == 1:
            return self.imr
        if self.poll:
            self.poll = False
            ir = self.highest_request()
            if ir is None:
                return 0
            self.ack(ir)
            return 0x80 | ir
        return self.isr if self.read_isr else self.irr

    def write_reg(self, reg: int, value: int) -> None:
        if reg == 0:
            if value & ICW1.INIT:
                self._icw1(value)
            elif value & OCW3_MARK:
                self._ocw3(value)
            else:
                self._ocw2(value)
        elif self.init_step == 2:
            self.vector_base = value & 0xF8
            self.init_step = 3 if self.needs_icw3 else 4 if self.needs_icw4 else 0
        elif self.init_step == 3:
            self.icw3 = value
            self.init_step = 4 if self.needs_icw4 else 0
        elif self.init_step == 4:
            self.auto_eoi = bool(value & ICW4.AEOI)
            self.special_fully_nested = bool(value & ICW4.SFNM)
            self.init_step = 0
        else:
            self.imr = value                    # OCW1

    def _icw1(self, value: int) -> None:
        self.reset(level_triggered=bool(value & ICW1.LTIM))
        self.needs_icw3 = not value & ICW1.SNGL
        self.needs_icw4 = bool(value & ICW1.IC4)
        self.init_step = 2

    def _ocw2(self, value: int) -> None:
        command, level = value & 0xE0, value & 7
        if command == OCW2_NONSPECIFIC_EOI:
            self._eoi(None, rotate=False)
        elif command == OCW2_ROTATE_NONSPECIFIC_EOI:
            self._eoi(None, rotate=True)
        elif command == OCW2_SPECIFIC_EOI:
            self._eoi(level, rotate=False)
        elif command == OCW2_ROTATE_SPECIFIC_EOI:
            self._eoi(level, rotate=True)
        elif command == OCW2_SET_PRIORITY:
            self.priority_add = (level + 1) & 7  # `level` becomes the lowest
        elif command == OCW2_ROTATE_AEOI_SET:
            self.rotate_on_aeoi = True
        elif command == OCW2_ROTATE_AEOI_CLEAR:
            self.rotate_on_aeoi = False

    def _ocw3(self, value: int) -> None:
        if value & OCW3_POLL:
            self.poll = True
        if value & OCW3_READ_REG:
            self.read_isr = bool(value & OCW3_RIS)
        if value & OCW3_ESMM:
            self.special_mask = bool(value & OCW3_SMM)

    # -- bus interface ---------------------------------------------------------------
    def io_read(self, offset: int, size: int) -> int:
        with self.pair.lock:
            value = read_bytes(self.read_reg, offset, size, 2)
            self.pair._update()
            return value

    def io_write(self, offset: int, size: int, value: int) -> None:
        with self.pair.lock:
            write_bytes(self.write_reg, offset, size, value, 2)
            self.pair._update()


class Elcr:
    """Edge/level control registers: one bit per IRQ, 1 = level-triggered."""

    def __init__(self, pair: "PicPair"):
        self.pair = pair

    def _read(self, reg: int) -> int:
        return self.pair.chips[reg].elcr

    def _write(self, reg: int, value: int) -> None:
        chip = self.pair.chips[reg]
        chip.elcr = value & ELCR_WRITABLE[reg]
        chip.irr = (chip.irr & ~chip.level_mask()) | (chip.lines & chip.level_mask())

    def io_read(self, offset: int, size: int) -> int:
        with self.pair.lock:
            return read_bytes(self._read, offset, size, 2)

    def io_write(self, offset: int, size: int, value: int) -> None:
        with self.pair.lock:
            write_bytes(self._write, offset, size, value, 2)
            self.pair._update()


class PicPair:
    def __init__(self, on_interrupt: Callable[[], None] | None = None):
        self.lock = threading.RLock()
        self.on_interrupt = on_interrupt
        self.master = Pic8259(self, "master", is_master=True)
        self.slave = Pic8259(self, "slave", is_master=False)
        self.chips = (self.master, self.slave)
        self.elcr = Elcr(self)
        self.int_output = False
        self.delivered: Counter = Counter()   # vectors acknowledged, per IRQ
        self.spurious = 0

    def register(self, bus, elcr: bool = True) -> None:
        bus.register(MASTER_BASE, 2, self.master, "8259A PIC master")
        bus.register(SLAVE_BASE, 2, self.slave, "8259A PIC slave")
        if elcr:
            bus.register(ELCR_BASE, 2, self.elcr, "ELCR")

    # -- device side -------------------------------------------------------------------
    def set_irq(self, line: int, level: int) -> None:
        if not 0 <= line < 16:
            raise ValueError(f"IRQ {line} is not 0..15")
        with self.lock:
            chip = self.master if line < 8 else self.slave
            chip.set_line(line & 7, 1 if level else 0)
            self._update()

    def irq_line(self, n: int) -> Callable[[int], None]:
        if not 0 <= n < 16:
            raise ValueError(f"IRQ {n} is not 0..15")
        return lambda level: self.set_irq(n, level)

    def _update(self) -> None:
        # The slave's INT drives the master's IR2: a deliverable slave request
        # is an edge on IR2 (re-presented after each slave EOI).
        if self.slave.highest_request() is not None:
            self.master.set_line(CASCADE_IR, 1)
            self.master.set_line(CASCADE_IR, 0)
        out = self.master.highest_request() is not None
        rose = out and not self.int_output
        self.int_output = out
        if rose and self.on_interrupt:
            self.on_interrupt()

    # -- CPU side ------------------------------------------------------------------------
    def pending(self) -> bool:
        """The INT pin: an unmasked request outranks everything in service."""
        return self.int_output

    def acknowledge(self) -> int:
        """The INTA cycle: the vector to deliver."""
        with self.lock:
            master, slave = self.master, self.slave
            ir = master.highest_request()
            if ir is None:
                self.spurious += 1
                vector = master.vector_base | 7
            else:
                master.ack(ir)
                if ir == CASCADE_IR:
                    ir2 = slave.highest_request()
                    if ir2 is None:
                        self.spurious += 1
                        vector = slave.vector_base | 7
                    else:
                        slave.ack(ir2)
                        self.delivered[8 + ir2] += 1
                        vector = slave.vector_base | ir2
                else:
                    self.delivered[ir] += 1
                    vector = master.vector_base | ir
            self._update()
            return vector
