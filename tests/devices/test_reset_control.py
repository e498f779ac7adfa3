"""Software resets through 0xCF9 (the chipset's reset control register, the
FADT's RESET_REG) and port 0x92 (System Control Port A)."""
from ringvisor.devices import reset_control
from ringvisor.machine.bus import PortBus


def rig():
    ports, seen = PortBus(), []
    cf9, port_a = reset_control.register(ports, seen.append)
    return ports, seen, cf9, port_a


def test_linux_reboot_pci_sequence_is_one_hard_reset():
    ports, seen, _, _ = rig()
    ports.write(0xCF9, 1, 0x02)                               # SYS_RST: nothing yet
    assert seen == [] and ports.read(0xCF9, 1) == 0x02
    ports.write(0xCF9, 1, 0x06)                               # RST_CPU rises
    assert seen == ["hard"]


def test_acpi_reset_value_and_the_other_kinds():
    ports, seen, _, _ = rig()
    ports.write(0xCF9, 1, 0x06)                               # the FADT's RESET_VALUE
    ports.write(0xCF9, 1, 0x04)                               # RST_CPU alone: CPU only
    ports.write(0xCF9, 1, 0x00)
    ports.write(0xCF9, 1, 0x0E)
    assert seen == ["hard", "cpu", "full"]


def test_port_92_fast_reset_and_a20():
    ports, seen, _, port_a = rig()
    assert ports.read(0x92, 1) & 0x02                         # A20 on
    ports.write(0x92, 1, 0x00)
    assert ports.read(0x92, 1) == 0 and seen == []
    ports.write(0x92, 1, 0x03)
    assert seen == ["fast"]
