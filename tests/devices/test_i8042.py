"""The i8042 keyboard controller (8042 command set as PC/AT and PS/2
controllers implement it) and port 0x92, including the reset requests that
end a run, on the soft platform's port bus."""
from __future__ import annotations

import pytest

from ringvisor.devices.i8042 import (CB_AUX_DISABLE, CB_KBD_DISABLE, CB_KBD_INT, I8042, ST_AUX_OBF, ST_CMD,
                                     ST_OBF, ST_SYS, ST_TIMEOUT)
from ringvisor.machine.bus import PortBus


class Rig:
    def __init__(self):
        self.kbd, self.aux, self.resets = [], [], 0
        self.dev = I8042(irq_kbd=self.kbd.append, irq_aux=self.aux.append, reset=self.reset)
        self.bus = PortBus()
        self.dev.register(self.bus)

    def reset(self):
        self.resets += 1

    def status(self):
        return self.bus.read(0x64, 1)

    def command(self, cmd, arg=None):
        self.bus.write(0x64, 1, cmd)
        if arg is not None:
            self.bus.write(0x60, 1, arg)

    def read(self):
        assert self.status() & ST_OBF
        return self.bus.read(0x60, 1)


@pytest.fixture
def k():
    return Rig()


def test_self_test_and_interface_tests(k):
    k.command(0xAA)
    assert k.status() & (ST_OBF | ST_SYS | ST_CMD) == ST_OBF | ST_SYS | ST_CMD
    assert k.read() == 0x55
    assert not k.status() & ST_OBF
    k.command(0xAB)
    assert k.read() == 0x00
    k.command(0xA9)
    assert k.read() == 0x00


def test_command_byte_read_and_write(k):
    k.command(0x20)
    assert k.read() == 0x45                      # keyboard interrupt, SYS, translation
    k.command(0x60, 0x74)                        # what Linux writes: irq off, ports disabled
    k.command(0x20)
    assert k.read() == 0x74
    assert k.status() & ST_CMD                   # A2: the last write was a command (0x20)
    k.command(0x60, 0x00)
    assert not k.status() & ST_CMD               # ... and now data                        # SYS clear in the command byte clears status SYS
    assert not k.status() & ST_SYS


def test_enable_disable_ports_toggle_the_command_byte(k):
    k.command(0xA7)
    assert k.dev.command_byte & CB_AUX_DISABLE
    k.command(0xA8)
    assert not k.dev.command_byte & CB_AUX_DISABLE
    k.command(0xAD)
    assert k.dev.command_byte & CB_KBD_DISABLE
    k.command(0xAE)
    assert not k.dev.command_byte & CB_KBD_DISABLE


def test_aux_loopback_comes_back_from_the_aux_side(k):
    # Linux's i8042_check_aux() and the MUX probe write through 0xD3.
    for value in (0x5A, 0xF0, 0x56, 0xA4):
        k.command(0xD3, value)
        assert k.status() & ST_AUX_OBF
        assert k.read() == value


def test_keyboard_buffer_write_raises_irq1_when_enabled(k):
    k.command(0xD2, 0x1C)
    assert k.kbd[-1:] == [1] and not k.status() & ST_AUX_OBF
    assert k.read() == 0x1C and k.kbd[-1] == 0
    k.command(0x60, 0x44)                        # keyboard interrupt off
    k.command(0xD2, 0x1C)
    assert k.kbd[-1] == 0
    assert k.read() == 0x1C


def test_no_keyboard_or_mouse_answers_fe_with_the_timeout_bit(k):
    k.bus.write(0x60, 1, 0xF2)                   # GET ID to the keyboard
    assert k.status() & (ST_OBF | ST_TIMEOUT) == ST_OBF | ST_TIMEOUT
    assert k.kbd[-1] == 1 and k.read() == 0xFE
    k.command(0xD4, 0xFF)                        # reset to the mouse
    assert k.status() & (ST_AUX_OBF | ST_TIMEOUT) == ST_AUX_OBF | ST_TIMEOUT
    assert k.read() == 0xFE and not k.status() & ST_TIMEOUT


def test_bytes_queue_in_order_and_an_empty_buffer_rereads_the_last_byte(k):
    k.command(0xAA)
    k.command(0x20)
    assert k.read() == 0x55 and k.read() == 0x45
    assert k.bus.read(0x60, 1) == 0x45 and not k.status() & ST_OBF


def test_reset_pulse_fe_and_output_port_bit0(k):
    k.command(0xFF)                              # pulses nothing
    assert k.resets == 0
    k.command(0xFE)                              # reboot(2) on a PC without ACPI
    assert k.resets == 1
    k.command(0xD0)
    assert k.read() & 0x03 == 0x03               # reset line high, A20 enabled
    k.command(0xD1, 0x03)
    assert k.resets == 1
    k.command(0xD1, 0x02)
    assert k.resets == 2


def test_kbd_interrupt_follows_command_byte_enable(k):
    assert k.dev.command_byte & CB_KBD_INT
    k.command(0x20)
    assert k.kbd[-1] == 1                        # responses raise IRQ 1 when enabled
    k.read()
    assert k.kbd[-1] == 0


def test_soft_platform_turns_a_reset_request_into_a_clean_stop():
    from ringvisor.exits import GuestStopped
    from ringvisor.machine.soft_platform import SoftPlatform
    bus = PortBus()
    SoftPlatform(bus)
    with pytest.raises(GuestStopped) as stop:
        bus.write(0x64, 1, 0xFE)
    assert stop.value.status == 0 and "i8042" in stop.value.reason
    with pytest.raises(GuestStopped) as stop:
        bus.write(0x92, 1, 0x01)
    assert stop.value.status == 0 and "fast reset" in stop.value.reason
    with pytest.raises(GuestStopped) as stop:
        bus.write(0xCF9, 1, 0x06)                # Linux's reboot=pci, ACPI's reset value
    assert stop.value.status == 0 and "hard reset" in stop.value.reason
