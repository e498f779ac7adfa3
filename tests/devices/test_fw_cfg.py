"""QEMU's fw_cfg device (QEMU docs/specs/fw_cfg), as a guest reads it."""
import struct

import pytest

from ringvisor.devices.fw_cfg import BASE, FwCfg
from ringvisor.errors import ConfigError
from ringvisor.machine.bus import PortBus
from ringvisor.machine.memory import GuestMemory

MiB = 1 << 20
MAP = [(0, 0x9FC00, 1), (0x9FC00, 0x60400, 2), (0x100000, 63 * MiB, 1)]


def rig(dma=True, **kw):
    memory = GuestMemory(4 * MiB)
    dev = FwCfg(cpus=2, ram_size=64 * MiB, memory=memory if dma else None, memory_map=MAP, **kw)
    ports = PortBus()
    dev.register(ports)
    return memory, dev, ports


def read_item(ports, key, length):
    ports.write(BASE, 2, key)
    return bytes(ports.read(BASE + 1, 1) for _ in range(length))


def directory(ports):
    count = struct.unpack(">I", read_item(ports, 0x19, 4))[0]
    raw = read_item(ports, 0x19, 4 + 64 * count)[4:]
    out = {}
    for i in range(count):
        size, select, _, name = struct.unpack_from(">IHH56s", raw, 64 * i)
        out[name.rstrip(b"\0").decode()] = (size, select)
    return out


def test_signature_id_and_machine_items():
    _, _, ports = rig()
    assert read_item(ports, 0x0000, 4) == b"QEMU"
    assert struct.unpack("<I", read_item(ports, 0x0001, 4))[0] == 3      # traditional + DMA
    assert struct.unpack("<Q", read_item(ports, 0x0003, 8))[0] == 64 * MiB
    assert struct.unpack("<H", read_item(ports, 0x0005, 2))[0] == 2
    assert struct.unpack("<H", read_item(ports, 0x000F, 2))[0] == 2
    assert struct.unpack("<I", read_item(ports, 0x8002, 4))[0] == 1      # IRQ 0 override
    assert read_item(ports, 0x0002, 16) == bytes(16)


def test_reads_past_the_end_and_unknown_keys_give_zeros_and_select_rewinds():
    _, _, ports = rig()
    assert read_item(ports, 0x0000, 6) == b"QEMU\0\0"
    assert read_item(ports, 0x1234, 3) == bytes(3)
    ports.write(BASE, 2, 0)
    ports.read(BASE + 1, 1)
    ports.write(BASE, 2, 0)
    assert ports.read(BASE + 1, 2) == int.from_bytes(b"QE", "little")
    ports.write(BASE + 1, 1, 0x55)                               # writes are ignored
    assert read_item(ports, 0x0000, 4) == b"QEMU"


def test_command_line_only_when_there_is_one():
    _, _, ports = rig(cmdline=b"console=ttyS0 quiet")
    assert struct.unpack("<I", read_item(ports, 0x14, 4))[0] == 20
    assert read_item(ports, 0x15, 20) == b"console=ttyS0 quiet\0"
    _, _, ports = rig()
    assert read_item(ports, 0x14, 4) == bytes(4)


def test_file_directory_and_e820():
    _, dev, ports = rig()
    dev.add_file("opt/ringvisor/hello", b"hi there")
    files = directory(ports)
    assert files == {"etc/e820": (60, 0x20), "opt/ringvisor/hello": (8, 0x21)}
    raw = read_item(ports, 0x20, 60)
    assert [struct.unpack_from("<QQI", raw, 20 * i) for i in range(3)] == MAP
    assert read_item(ports, 0x21, 8) == b"hi there"
    with pytest.raises(ConfigError):
        dev.add_file("x" * 56, b"")


def dma(memory, ports, control, length, address, at=0x2000):
    memory.write(at, struct.pack(">IIQ", control, length, address))
    ports.write(BASE + 4, 4, int.from_bytes((0).to_bytes(4, "big"), "little"))
    ports.write(BASE + 8, 4, int.from_bytes(at.to_bytes(4, "big"), "little"))
    return struct.unpack(">I", memory.read(at, 4))[0]


def test_dma_select_skip_read_as_linux_and_seabios_use_it():
    memory, dev, ports = rig()
    assert ports.read(BASE + 4, 4).to_bytes(4, "little") + ports.read(BASE + 8, 4).to_bytes(4, "little") \
        == b"QEMU CFG"
    assert dma(memory, ports, 0x0000 << 16 | 0x08 | 0x02, 4, 0x3000) == 0     # select + read
    assert memory.read(0x3000, 4) == b"QEMU"
    assert dma(memory, ports, 0x0020 << 16 | 0x08 | 0x04, 20, 0) == 0        # select + skip
    assert dma(memory, ports, 0x02, 20, 0x3100) == 0                         # next e820 entry
    assert struct.unpack("<QQI", memory.read(0x3100, 20)) == MAP[1]
    memory.write(0x3200, b"\xff" * 28)
    assert dma(memory, ports, 0x02, 28, 0x3200) == 0                         # the last, then zeros
    assert struct.unpack("<QQI", memory.read(0x3200, 20)) == MAP[2]
    assert memory.read(0x3200 + 20, 8) == bytes(8)


def test_dma_errors():
    memory, dev, ports = rig()
    assert dma(memory, ports, 0x10, 4, 0x3000) == 0x01                       # writes refused
    assert dma(memory, ports, 0x0000 << 16 | 0x08 | 0x02, 4, 64 * MiB) == 0x01   # outside RAM


def test_without_memory_there_is_no_dma():
    _, _, ports = rig(dma=False)
    assert struct.unpack("<I", read_item(ports, 0x0001, 4))[0] == 1
    assert ports.name_of(BASE + 4) == "unassigned"
