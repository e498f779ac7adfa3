"""PCI configuration mechanism #1 (ports 0xCF8/0xCFC-0xCFF) and the pc
machine's chipset behind it: the 82441FX host bridge at 00:00.0 and the
PIIX3 ISA bridge at 00:01.0, register by register against the datasheets'
reset values (82441FX: 290549; 82371SB: 290550) and QEMU's IDs (its
subsystem IDs 1AF4:1100 included, where the chips have reserved bytes)."""
import pytest

from ringvisor.devices import chipset
from ringvisor.devices.pci_host import PciHost, address
from ringvisor.machine.bus import PortBus


def rig(pam_seen=None):
    ports, host = PortBus(), PciHost()
    host.attach(0, 0, chipset.host_bridge(pam_seen.append if pam_seen is not None else lambda pam: None))
    host.attach(1, 0, chipset.isa_bridge())
    host.register(ports)
    return ports, host


def cfg_read(ports, bus, dev, fn, reg, size=4):
    ports.write(0xCF8, 4, address(bus, dev, fn, reg))
    return ports.read(0xCFC + (reg & 3), size)


def cfg_write(ports, bus, dev, fn, reg, size, value):
    ports.write(0xCF8, 4, address(bus, dev, fn, reg))
    ports.write(0xCFC + (reg & 3), size, value)


# (offset, size, reset value) from the datasheets' register tables.
I440FX_RESET = [
    (0x00, 2, 0x8086), (0x02, 2, 0x1237), (0x04, 2, 0x0006), (0x06, 2, 0x0280),
    (0x08, 1, 0x02), (0x09, 1, 0x00), (0x0A, 1, 0x00), (0x0B, 1, 0x06), (0x0D, 1, 0x00),
    (0x0E, 1, 0x00), (0x2C, 2, 0x1AF4), (0x2E, 2, 0x1100), (0x50, 2, 0x0000), (0x53, 1, 0x80), (0x57, 1, 0x01), (0x58, 1, 0x10),
    *((0x59 + i, 1, 0x00) for i in range(7)),                 # PAM0-PAM6
    *((0x60 + i, 1, 0x01) for i in range(8)),                 # DRB0-DRB7
    (0x71, 1, 0x10), (0x72, 1, 0x02),                         # CLT, SMRAM
]
PIIX3_RESET = [
    (0x00, 2, 0x8086), (0x02, 2, 0x7000), (0x04, 2, 0x0007), (0x06, 2, 0x0200),
    (0x08, 1, 0x00), (0x09, 1, 0x00), (0x0A, 1, 0x01), (0x0B, 1, 0x06), (0x0E, 1, 0x80),
    (0x2C, 2, 0x1AF4), (0x2E, 2, 0x1100),
    (0x4C, 1, 0x4D), (0x4E, 2, 0x0003), *((0x60 + i, 1, 0x80) for i in range(4)),
    (0x69, 1, 0x02), (0x6A, 2, 0x0000), (0x70, 1, 0x80), (0x76, 1, 0x0C), (0x77, 1, 0x0C),
    (0x78, 2, 0x0002), (0x80, 1, 0x00), (0x82, 1, 0x00), (0xA0, 1, 0x08), (0xA2, 2, 0x0000),
    (0xA4, 4, 0x00000000), (0xA8, 1, 0x0F), (0xAA, 2, 0x0000), (0xAC, 1, 0x00), (0xAE, 1, 0x00),
]


@pytest.mark.parametrize("reg, size, value", I440FX_RESET)
def test_host_bridge_reset_values(reg, size, value):
    ports, _ = rig()
    assert cfg_read(ports, 0, 0, 0, reg, size) == value


@pytest.mark.parametrize("reg, size, value", PIIX3_RESET)
def test_isa_bridge_reset_values(reg, size, value):
    ports, _ = rig()
    assert cfg_read(ports, 0, 1, 0, reg, size) == value


def test_config_address_is_a_dword_register_with_reserved_bits():
    ports, _ = rig()
    ports.write(0xCF8, 4, 0xFFFFFFFF)
    assert ports.read(0xCF8, 4) == 0x80FFFFFC                # 30:24 and 1:0 read 0
    ports.write(0xCF8, 4, 0x80000000)
    assert ports.read(0xCF8, 4) == 0x80000000                # Linux's pci_check_type1 probe
    ports.write(0xCF8, 1, 0x12)                              # byte/word: ordinary I/O, not CONFADD
    ports.write(0xCF8, 2, 0x1234)
    assert ports.read(0xCF8, 4) == 0x80000000
    assert ports.read(0xCF8, 1) == 0xFF and ports.read(0xCF8, 2) == 0xFFFF


def test_byte_word_and_dword_accesses_pick_bytes_of_the_dword():
    ports, _ = rig()
    assert cfg_read(ports, 0, 0, 0, 0x00) == 0x12378086
    ports.write(0xCF8, 4, address(0, 0, 0, 0x08))
    assert ports.read(0xCFC, 4) == 0x06000002                # class 060000, revision 02
    assert [ports.read(0xCFC + i, 1) for i in range(4)] == [0x02, 0x00, 0x00, 0x06]
    assert ports.read(0xCFE, 2) == 0x0600
    ports.write(0xCF8, 4, address(0, 1, 0, 0x0C))
    assert ports.read(0xCFE, 1) == 0x80                      # header type: multifunction


def test_enable_bit_clear_means_no_configuration_cycle():
    ports, host = rig()
    ports.write(0xCF8, 4, 0x00000000)                        # 00:00.0 register 0, disabled
    assert ports.read(0xCFC, 4) == 0xFFFFFFFF and ports.read(0xCFD, 1) == 0xFF
    ports.write(0xCF8, 4, 0x59 & 0xFC)
    ports.write(0xCFD, 1, 0x30)                              # would be PAM0
    assert host.functions[(0, 0)].config[0x59] == 0 and host.cycles == 0


@pytest.mark.parametrize("bus, dev, fn", [(0, 0, 1), (0, 1, 1), (0, 1, 3), (0, 2, 0), (0, 31, 7), (1, 0, 0)])
def test_unassigned_functions_read_all_ones(bus, dev, fn):
    ports, _ = rig()
    assert cfg_read(ports, bus, dev, fn, 0) == 0xFFFFFFFF
    assert cfg_read(ports, bus, dev, fn, 0x0E, 1) == 0xFF
    cfg_write(ports, bus, dev, fn, 0x04, 2, 0x0007)          # a master abort: nothing happens
    assert cfg_read(ports, bus, dev, fn, 0x04, 2) == 0xFFFF


def test_read_only_registers_ignore_writes_and_status_bits_clear_by_writing_one():
    ports, host = rig()
    cfg_write(ports, 0, 0, 0, 0x00, 4, 0)
    assert cfg_read(ports, 0, 0, 0, 0x00) == 0x12378086
    cfg_write(ports, 0, 1, 0, 0x08, 4, 0xFFFFFFFF)
    assert cfg_read(ports, 0, 1, 0, 0x08) == 0x06010000
    bridge = host.functions[(0, 0)]
    bridge.config[0x07] |= 0x20                              # received master abort (set by hardware)
    cfg_write(ports, 0, 0, 0, 0x06, 2, 0x2000)
    assert cfg_read(ports, 0, 0, 0, 0x06, 2) == 0x0280
    cfg_write(ports, 0, 0, 0, 0x06, 2, 0xFFFF)               # DEVSEL timing and the 0x80 bit stay
    assert cfg_read(ports, 0, 0, 0, 0x06, 2) == 0x0280


def test_pam_registers_are_writable_in_their_defined_bits_and_reported():
    seen = []
    ports, _ = rig(seen)
    cfg_write(ports, 0, 0, 0, 0x58, 4, 0x33333310)           # SeaBIOS's dword write: DRAMT, PAM0-2
    assert cfg_read(ports, 0, 0, 0, 0x58) == 0x33333010      # PAM0 bits 3:0 are reserved
    assert seen[-1] == bytes([0x30, 0x33, 0x33, 0, 0, 0, 0])
    cfg_write(ports, 0, 0, 0, 0x5C, 4, 0xFFFFFFFF)
    assert cfg_read(ports, 0, 0, 0, 0x5C) == 0x33333333
    n = len(seen)
    cfg_write(ports, 0, 0, 0, 0x60, 1, 0x10)                 # DRB0: not a PAM register
    assert len(seen) == n


def test_reset_restores_every_register_and_tells_the_pam():
    seen = []
    ports, host = rig(seen)
    cfg_write(ports, 0, 0, 0, 0x5C, 4, 0x33333333)
    cfg_write(ports, 0, 1, 0, 0x60, 1, 0x0B)                 # PIRQA -> IRQ 11
    host.reset()
    assert ports.read(0xCF8, 4) == 0 and seen[-1] == bytes(7)
    assert cfg_read(ports, 0, 0, 0, 0x5C) == 0
    assert cfg_read(ports, 0, 1, 0, 0x60, 1) == 0x80
