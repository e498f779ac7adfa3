"""A minimal Intel 8042 keyboard controller (ports 0x60 data, 0x64
status/command) with an auxiliary (PS/2 mouse) port and no devices plugged
in: what a headless PC has. Enough for an OS to find the controller,
self-test it, program its command byte, probe for a keyboard and a mouse
(and find none, at once, with the controller's time-out answer) and reset
the machine through it.

Status (read 0x64): bit 0 OBF output buffer full, 1 IBF (never: commands
complete at once), 2 SYS system flag, 3 A2 (last write was a command),
4 keyboard not inhibited, 5 AUX_OBF (the byte is from the aux port),
6 time-out, 7 parity error (never).

Commands (write 0x64), after the 8042/PS2 controller references:
  0x20-0x3F  read controller RAM byte (0x20: the command byte)
  0x60-0x7F  write controller RAM byte (next byte written to 0x60)
  0xA7/0xA8  disable/enable the aux port (command byte bit 5)
  0xA9       aux interface test -> 0x00 (no error)
  0xAA       controller self-test -> 0x55, sets SYS
  0xAB       keyboard interface test -> 0x00
  0xAD/0xAE  disable/enable the keyboard (command byte bit 4)
  0xC0       read input port; 0xD0 read / 0xD1 write the output port
             (bit 0 = 0 resets the CPU, bit 1 = A20 gate)
  0xD2/0xD3  write the keyboard/aux output buffer (as if the device sent it)
  0xD4       write the next byte to the aux device
  0xE0       read test inputs
  0xF0-0xFF  pulse output port bits 0-3 low for each 0 in the low nibble:
             0xFE pulses bit 0, the CPU reset line.
A byte written to 0x60 outside a command goes to the keyboard; with none
attached the controller answers 0xFE with the time-out bit, as an AT's does.
Interrupts: IRQ 1 for bytes from the keyboard side, IRQ 12 for the aux
side, when the command byte enables them (bits 0 and 1).

A reset request (0xFE, or bit 0 of the output port written 0) calls the
injected `reset()`; the machine ends the run on it (a guest `reboot`).
"""
from __future__ import annotations

from typing import Callable

DATA_PORT, COMMAND_PORT = 0x60, 0x64

ST_OBF, ST_SYS, ST_CMD, ST_UNLOCKED, ST_AUX_OBF, ST_TIMEOUT = 0x01, 0x04, 0x08, 0x10, 0x20, 0x40
CB_KBD_INT, CB_AUX_INT, CB_SYS, CB_KBD_DISABLE, CB_AUX_DISABLE, CB_XLATE = 0x01, 0x02, 0x04, 0x10, 0x20, 0x40
OUT_RESET, OUT_A20 = 0x01, 0x02   # output port: bit 0 high = CPU running, bit 1 = A20 enabled
SELF_TEST_OK, INTERFACE_OK = 0x55, 0x00
NO_DEVICE = 0xFE                  # the controller's answer when no device responds
KBD_IRQ, AUX_IRQ = 1, 12
# Commands whose next byte written to port 0x60 is their argument.
WRITE_OUTPUT_PORT, WRITE_KBD_BUFFER, WRITE_AUX_BUFFER, WRITE_AUX_DEVICE = 0xD1, 0xD2, 0xD3, 0xD4


class I8042:
    def __init__(self, irq_kbd: Callable[[int], None] | None = None,
                 irq_aux: Callable[[int], None] | None = None, reset: Callable[[], None] | None = None):
        self.irq_kbd = irq_kbd or (lambda level: None)
        self.irq_aux = irq_aux or (lambda level: None)
        self.reset = reset or (lambda: None)
        self.ram = bytearray(32)
        self.ram[0] = CB_KBD_INT | CB_SYS | CB_XLATE     # as a BIOS leaves it
        self.status = ST_SYS | ST_UNLOCKED
        self.output_port = OUT_RESET | OUT_A20
        self.queue: list[tuple[int, bool, bool]] = []     # (byte, from aux, time-out)
        self.pending: int | None = None                   # command waiting for its data byte
        self.last_data = 0                                # what the data port reads when empty
        self.resets = 0
        self._levels = [0, 0]

    @property
    def command_byte(self) -> int:
        return self.ram[0]

    # -- output buffer -------------------------------------------------------------------
    def _push(self, byte: int, aux: bool = False, timeout: bool = False) -> None:
        self.queue.append((byte & 0xFF, aux, timeout))
        self._refresh()

    def _refresh(self) -> None:
        """Status and interrupt lines follow the head of the output queue."""
        self.status &= ~(ST_OBF | ST_AUX_OBF | ST_TIMEOUT)
        kbd = aux = 0
        if self.queue:
            _, from_aux, timeout = self.queue[0]
            self.status |= ST_OBF | (ST_AUX_OBF if from_aux else 0) | (ST_TIMEOUT if timeout else 0)
            if from_aux:
                aux = int(bool(self.ram[0] & CB_AUX_INT))
            else:
                kbd = int(bool(self.ram[0] & CB_KBD_INT))
        self._set_lines(kbd, aux)

    def _set_lines(self, kbd: int, aux: int) -> None:
        if kbd != self._levels[0]:
            self._levels[0] = kbd
            self.irq_kbd(kbd)
        if aux != self._levels[1]:
            self._levels[1] = aux
            self.irq_aux(aux)

    # -- commands ------------------------------------------------------------------------
    def _command(self, cmd: int) -> None:
        self.status |= ST_CMD
        self.pending = None
        if 0x20 <= cmd <= 0x3F:
            self._push(self.ram[cmd - 0x20])
        elif 0x60 <= cmd <= 0x7F or cmd in (WRITE_OUTPUT_PORT, WRITE_KBD_BUFFER, WRITE_AUX_BUFFER,
                                            WRITE_AUX_DEVICE):
            self.pending = cmd
        elif cmd == 0xA7:
            self.ram[0] |= CB_AUX_DISABLE
        elif cmd == 0xA8:
            self.ram[0] &= ~CB_AUX_DISABLE
        elif cmd in (0xA9, 0xAB):
            self._push(INTERFACE_OK)
        elif cmd == 0xAA:
            self.status |= ST_SYS
            self._push(SELF_TEST_OK)
        elif cmd == 0xAD:
            self.ram[0] |= CB_KBD_DISABLE
        elif cmd == 0xAE:
            self.ram[0] &= ~CB_KBD_DISABLE
        elif cmd == 0xC0:
            self._push(0x80)                           # input port: keyboard not inhibited
        elif cmd == 0xD0:
            self._push(self.output_port | (0x10 if self.queue else 0))
        elif cmd == 0xE0:
            self._push(0x00)
        elif cmd >= 0xF0:
            if not cmd & OUT_RESET:                    # pulse bit 0 low: CPU reset
                self._reset()
        # Other commands are vendor-specific: ignored, as many controllers do.

    def _data(self, value: int) -> None:
        self.status &= ~ST_CMD
        cmd, self.pending = self.pending, None
        if cmd is None:
            self._push(NO_DEVICE, timeout=True)        # to the keyboard: nobody answers
        elif 0x60 <= cmd <= 0x7F:
            self.ram[cmd - 0x60] = value
            if cmd == 0x60:
                self.status = self.status & ~ST_SYS | (ST_SYS if value & CB_SYS else 0)
                self._refresh()
        elif cmd == WRITE_OUTPUT_PORT:
            self.output_port = value
            if not value & OUT_RESET:
                self._reset()
        elif cmd == WRITE_KBD_BUFFER:
            self._push(value)
        elif cmd == WRITE_AUX_BUFFER:
            self._push(value, aux=True)
        elif cmd == WRITE_AUX_DEVICE:
            self._push(NO_DEVICE, aux=True, timeout=True)

    def _reset(self) -> None:
        self.resets += 1
        self.reset()

    # -- ports: 0x60 and 0x64 are registered apart (0x61 belongs to port61) ------------
    def read_data(self) -> int:
        if self.queue:
            self.last_data = self.queue.pop(0)[0]
            self._refresh()
        return self.last_data

    def register(self, bus) -> None:
        bus.register(DATA_PORT, 1, _Port(self.read_data, self._data), "i8042 keyboard controller data")
        bus.register(COMMAND_PORT, 1, _Port(lambda: self.status, self._command),
                     "i8042 keyboard controller status/command")


class _Port:
    """One byte-wide port of the controller (wider accesses: the other bytes
    belong to nobody and read as 0xFF)."""

    def __init__(self, read: Callable[[], int], write: Callable[[int], None]):
        self.read, self.write = read, write

    def io_read(self, offset: int, size: int) -> int:
        return self.read() | ((1 << 8 * size) - 256 if size > 1 else 0)

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.write(value & 0xFF)
