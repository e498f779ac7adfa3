"""A 16550A UART (National PC16550D register model), as wired on a PC COM port.

Eight byte-wide registers; LCR.DLAB swaps offsets 0/1 for the baud divisor.
What is modelled, and how time is simplified:

- TX completes at once: a THR write hands the byte to `output` and THRE/TEMT
  are set again immediately, so the transmitter is always idle when read.
- RX: a 16-byte FIFO (1-byte holding register when FIFOs are off) filled by the
  host through `receive()`. Bytes arriving into a full FIFO are lost and reported
  as an overrun (LSR.OE, a line-status interrupt).
- Character timeout: the host delivers a burst atomically and the line is idle
  afterwards, so the "four character times without FIFO activity" have always
  elapsed by the time the guest looks: data below the trigger level is reported
  as a timeout interrupt (IIR 0xCC), at or above it as data available (0xC4).
- Interrupt identification follows the datasheet priorities:
  line status > RX data available / timeout > THR empty > modem status.
- THR-empty interrupt as drivers rely on it: raised when IER.ETBEI goes 0->1
  while THR is empty and whenever THR becomes empty; cleared by reading IIR
  while it is the reported source, or by writing THR (Linux's THRE test).
- Modem lines: the far end looks like a connected terminal (CTS, DSR, DCD
  asserted). MCR.LOOP loops RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD and sends
  transmitted bytes back to the receiver instead of `output`.
- The IRQ pin reaches the PIC only through MCR.OUT2 (a PC board gate), and in
  loopback mode the modem outputs, OUT2 included, are forced inactive, so the
  interrupt is not visible outside the chip then.

`receive()` is called by a host reader thread while the vCPU thread does I/O:
every entry point takes the device lock, and `irq` is called under it so level
changes reach the interrupt controller in order.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Callable

from ringvisor.devices.byteio import read_bytes, write_bytes

PORTS = 8          # I/O ports the UART decodes
FIFO_SIZE = 16
BASE_CLOCK = 115200  # 1.8432 MHz / 16: the baud rate for divisor 1


class Reg(IntEnum):
    RBR_THR = 0    # DLL when LCR.DLAB
    IER = 1        # DLM when LCR.DLAB
    IIR_FCR = 2    # IIR on read, FCR on write
    LCR = 3
    MCR = 4
    LSR = 5
    MSR = 6
    SCR = 7


class IER(IntFlag):
    ERBFI = 0x01   # received data available (and character timeout)
    ETBEI = 0x02   # transmitter holding register empty
    ELSI = 0x04    # receiver line status
    EDSSI = 0x08   # modem status
    WRITABLE = 0x0F  # bits 4-7 read as 0 on a 16550A (Linux probes this)


class IIR(IntEnum):
    """Interrupt identification codes (bits 3:0), highest priority first."""
    LINE_STATUS = 0x06
    RX_TIMEOUT = 0x0C
    RX_DATA = 0x04
    THR_EMPTY = 0x02
    MODEM_STATUS = 0x00
    NONE = 0x01


IIR_FIFO_ENABLED = 0xC0  # bits 7:6 mirror FCR0: the 16550A signature


class FCR(IntFlag):
    ENABLE = 0x01
    CLEAR_RX = 0x02
    CLEAR_TX = 0x04
    DMA_MODE = 0x08
    TRIGGER = 0xC0


RX_TRIGGER_LEVELS = (1, 4, 8, 14)  # FCR bits 7:6


class LCR(IntFlag):
    WORD_LENGTH = 0x03
    STOP_BITS = 0x04
    PARITY = 0x08
    EVEN_PARITY = 0x10
    STICK_PARITY = 0x20
    BREAK = 0x40
    DLAB = 0x80


class MCR(IntFlag):
    DTR = 0x01
    RTS = 0x02
    OUT1 = 0x04
    OUT2 = 0x08    # gates the IRQ pin on PC boards
    LOOP = 0x10
    WRITABLE = 0x1F


class LSR(IntFlag):
    DR = 0x01      # data ready
    OE = 0x02      # overrun error
    PE = 0x04      # parity error
    FE = 0x08      # framing error
    BI = 0x10      # break interrupt
    THRE = 0x20    # transmitter holding register empty
    TEMT = 0x40    # transmitter empty
    FIFO_ERROR = 0x80
    ERRORS = OE | PE | FE | BI


class MSR(IntFlag):
    DCTS = 0x01
    DDSR = 0x02
    TERI = 0x04    # trailing edge of RI
    DDCD = 0x08
    CTS = 0x10
    DSR = 0x20
    RI = 0x40
    DCD = 0x80
    DELTAS = 0x0F
    LINES = 0xF0


# Host side of the cable when not in loopback: a terminal that is connected.
HOST_MODEM_LINES = MSR.CTS | MSR.DSR | MSR.DCD


def _loopback_lines(mcr: int) -> int:
    """MSR input bits as seen in loopback mode: the MCR outputs fed back."""
    lines = 0
    if mcr & MCR.RTS:
        lines |= MSR.CTS
    if mcr & MCR.DTR:
        lines |= MSR.DSR
    if mcr & MCR.OUT1:
        lines |= MSR.RI
    if mcr & MCR.OUT2:
        lines |= MSR.DCD
    return lines


@dataclass
class UartStats:
    bytes_in: int = 0       # bytes from the host that reached the receiver
    bytes_out: int = 0      # bytes transmitted to `output`
    bytes_dropped: int = 0  # host bytes lost to overrun
    loopback_bytes: int = 0
    interrupts: int = 0     # rising edges of the IRQ line reaching the PIC


class Uart16550:
    def __init__(self, irq: Callable[[int], None] | None = None,
                 output: Callable[[bytes], None] | None = None):
        self.irq = irq or (lambda level: None)
        self.output = output or (lambda data: None)
        self.stats = UartStats()
        self._lock = threading.Lock()
        self._irq_level = 0
        self.reset()

    # -- state -------------------------------------------------------------------
    def reset(self) -> None:
        """Master reset (the values in the datasheet's reset table)."""
        self.ier = 0
        self.lcr = 0
        self.mcr = 0
        self.lsr = LSR.THRE | LSR.TEMT
        self.scr = 0
        self.divisor = 12                       # 9600 baud, what firmware leaves
        self.fifo_enabled = False
        self.fifo_control = 0                   # FCR bits that stick (DMA, trigger)
        self.rx: deque[int] = deque()
        self.rbr = 0                            # last byte read (re-read when empty)
        self.thr_pending = False                # THR-empty interrupt source latched
        self._msr_lines = int(HOST_MODEM_LINES)
        self._msr_deltas = 0
        self._set_irq(0)

    @property
    def baud(self) -> int:
        return BASE_CLOCK // self.divisor if self.divisor else 0

    @property
    def trigger_level(self) -> int:
        return RX_TRIGGER_LEVELS[(self.fifo_control & FCR.TRIGGER) >> 6]

    @property
    def rx_capacity(self) -> int:
        return FIFO_SIZE if self.fifo_enabled else 1

    def rx_room(self) -> int:
        """Free receiver slots: how much a host feeder can send without overrun."""
        with self._lock:
            return self.rx_capacity - len(self.rx)

    # -- interrupts --------------------------------------------------------------
    def interrupt_source(self) -> IIR:
        ier, lsr = self.ier, self.lsr
        if ier & IER.ELSI and lsr & LSR.ERRORS:
            return IIR.LINE_STATUS
        if ier & IER.ERBFI and self.rx:
            if self.fifo_enabled and len(self.rx) < self.trigger_level:
                return IIR.RX_TIMEOUT
            return IIR.RX_DATA
        if ier & IER.ETBEI and self.thr_pending:
            return IIR.THR_EMPTY
        if ier & IER.EDSSI and self._msr_deltas:
            return IIR.MODEM_STATUS
        return IIR.NONE

    def _update_irq(self) -> None:
        pin = self.interrupt_source() != IIR.NONE
        # OUT2 drives the board's IRQ buffer; loopback forces the outputs off.
        gated = self.mcr & MCR.OUT2 and not self.mcr & MCR.LOOP
        self._set_irq(1 if pin and gated else 0)

    def _set_irq(self, level: int) -> None:
        if level != self._irq_level:
            self._irq_level = level
            if level:
                self.stats.interrupts += 1
            self.irq(level)

    @property
    def irq_level(self) -> int:
        return self._irq_level

    # -- receiver ----------------------------------------------------------------
    def _push_rx(self, byte: int) -> bool:
        if len(self.rx) < self.rx_capacity:
            self.rx.append(byte)
            self.lsr |= LSR.DR
            return True
        self.lsr |= LSR.OE
        if not self.fifo_enabled:
            # 16450 mode: the new character overwrites the holding register.
            self.rx[-1] = byte
        return False

    def receive(self, data: bytes) -> int:
        """Bytes arriving on the wire from the host. Returns how many were
        accepted; the rest were lost to overrun (and reported to the guest)."""
        if not data:
            return 0
        with self._lock:
            if self.mcr & MCR.LOOP:
                # In loopback the serial input is disconnected from the pin.
                self.stats.bytes_dropped += len(data)
                return 0
            accepted = 0
            for byte in data:
                if self._push_rx(byte):
                    accepted += 1
            self.stats.bytes_in += accepted
            self.stats.bytes_dropped += len(data) - accepted
            self._update_irq()
            return accepted

    def _read_rbr(self) -> int:
        if self.rx:
            self.rbr = self.rx.popleft()
        if not self.rx:
            self.lsr &= ~LSR.DR
        return self.rbr

    # -- transmitter -------------------------------------------------------------
    def _write_thr(self, byte: int) -> None:
        self.thr_pending = False
        if self.mcr & MCR.LOOP:
            self.stats.loopback_bytes += 1
            self._push_rx(byte)
        else:
            self.stats.bytes_out += 1
            self.output(bytes((byte,)))
        # The byte left at once: THR and the shift register are empty again.
        self.lsr |= LSR.THRE | LSR.TEMT
        self.thr_pending = True

    # -- modem status ------------------------------------------------------------
    def _set_modem_lines(self, lines: int) -> None:
        changed = lines ^ self._msr_lines
        if changed & MSR.CTS:
            self._msr_deltas |= MSR.DCTS
        if changed & MSR.DSR:
            self._msr_deltas |= MSR.DDSR
        if changed & MSR.DCD:
            self._msr_deltas |= MSR.DDCD
        if changed & MSR.RI and not lines & MSR.RI:
            self._msr_deltas |= MSR.TERI
        self._msr_lines = lines

    def _read_msr(self) -> int:
        value = self._msr_lines | self._msr_deltas
        self._msr_deltas = 0
        return value

    # -- register file -----------------------------------------------------------
    def _read(self, reg: int) -> int:
        dlab = self.lcr & LCR.DLAB
        if reg == Reg.RBR_THR:
            return self.divisor & 0xFF if dlab else self._read_rbr()
        if reg == Reg.IER:
            return self.divisor >> 8 if dlab else self.ier
        if reg == Reg.IIR_FCR:
            source = self.interrupt_source()
            if source == IIR.THR_EMPTY:
                self.thr_pending = False       # reading IIR acknowledges THRE
            return source | (IIR_FIFO_ENABLED if self.fifo_enabled else 0)
        if reg == Reg.LCR:
            return self.lcr
        if reg == Reg.MCR:
            return self.mcr
        if reg == Reg.LSR:
            value = self.lsr
            if self.rx:
                value |= LSR.DR
            self.lsr &= ~LSR.ERRORS            # errors are reported once
            return value
        if reg == Reg.MSR:
            return self._read_msr()
        return self.scr

    def _write(self, reg: int, value: int) -> None:
        dlab = self.lcr & LCR.DLAB
        if reg == Reg.RBR_THR:
            if dlab:
                self.divisor = (self.divisor & 0xFF00) | value
            else:
                self._write_thr(value)
        elif reg == Reg.IER:
            if dlab:
                self.divisor = (self.divisor & 0x00FF) | (value << 8)
            else:
                old, self.ier = self.ier, value & IER.WRITABLE
                if self.ier & ~old & IER.ETBEI and self.lsr & LSR.THRE:
                    self.thr_pending = True    # enabling ETBEI with THR empty
        elif reg == Reg.IIR_FCR:
            self._write_fcr(value)
        elif reg == Reg.LCR:
            self.lcr = value
        elif reg == Reg.MCR:
            self._write_mcr(value & MCR.WRITABLE)
        elif reg == Reg.SCR:
            self.scr = value
        # LSR and MSR are read-only here: writes have no effect.

    def _write_fcr(self, value: int) -> None:
        enable = bool(value & FCR.ENABLE)
        if enable != self.fifo_enabled:
            # Switching FIFO mode empties both FIFOs.
            self.rx.clear()
            self.lsr &= ~LSR.DR
            self.fifo_enabled = enable
        if not enable:
            return                             # other bits need FCR0 set
        if value & FCR.CLEAR_RX:
            self.rx.clear()
            self.lsr &= ~LSR.DR
        # CLEAR_TX: nothing queued, the transmitter is always empty.
        self.fifo_control = value & (FCR.DMA_MODE | FCR.TRIGGER)

    def _write_mcr(self, value: int) -> None:
        self.mcr = value
        if value & MCR.LOOP:
            self._set_modem_lines(_loopback_lines(value))
        else:
            self._set_modem_lines(int(HOST_MODEM_LINES))

    # -- bus interface -----------------------------------------------------------
    def io_read(self, offset: int, size: int) -> int:
        with self._lock:
            value = read_bytes(self._read, offset, size, PORTS)
            self._update_irq()
            return value

    def io_write(self, offset: int, size: int, value: int) -> None:
        with self._lock:
            write_bytes(self._write, offset, size, value, PORTS)
            self._update_irq()
