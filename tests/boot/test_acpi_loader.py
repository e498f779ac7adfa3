"""The ACPI tables as fw_cfg files with QEMU's linker/loader script, run the
way SeaBIOS runs it (romfile_loader_*: allocate, add pointer, add checksum),
then read back as an OS would."""
import struct

import pytest

from ringvisor.boot import acpi_loader
from ringvisor.boot.pc_description import PcDescription
from ringvisor.devices.fw_cfg import FwCfg
from ringvisor.machine.bus import PortBus
from ringvisor.machine.memory import GuestMemory

from acpi_walk import madt_entries, walk

MiB = 1 << 20


def fw_cfg_files(ports):
    """Read every fw_cfg file through the ports, as firmware does."""
    def item(key, length):
        ports.write(0x510, 2, key)
        return bytes(ports.read(0x511, 1) for _ in range(length))
    count = struct.unpack(">I", item(0x19, 4))[0]
    raw = item(0x19, 4 + 64 * count)[4:]
    out = {}
    for i in range(count):
        size, select, _, name = struct.unpack_from(">IHH56s", raw, 64 * i)
        out[name.rstrip(b"\0").decode()] = item(select, size)
    return out


def run_loader(script, files, memory, fseg=0xF5A40, high=0x7F0000):
    """A firmware's loader: FSEG allocations from `fseg`, the rest from `high`."""
    where, nxt = {}, {1: high, 2: fseg}
    for i in range(0, len(script), 128):
        command = struct.unpack_from("<I", script, i)[0]
        body = script[i + 4:i + 128]
        if command == 1:
            name, align, zone = struct.unpack_from("<56sIB", body)
            name = name.rstrip(b"\0").decode()
            addr = -(-nxt[zone] // align) * align
            memory.write(addr, files[name])
            where[name] = addr
            nxt[zone] = addr + len(files[name])
        elif command == 2:
            dest, src, offset, size = struct.unpack_from("<56s56sIB", body)
            dest, src = dest.rstrip(b"\0").decode(), src.rstrip(b"\0").decode()
            at = where[dest] + offset
            value = int.from_bytes(memory.read(at, size), "little") + where[src]
            memory.write(at, value.to_bytes(size, "little"))
        elif command == 3:
            name, offset, start, length = struct.unpack_from("<56sIII", body)
            base = where[name.rstrip(b"\0").decode()]
            total = sum(memory.read(base + start, length))
            byte = memory.read(base + offset, 1)[0]
            memory.write(base + offset, bytes([(byte - total) & 0xFF]))
        else:
            raise AssertionError(f"unknown loader command {command}")
    return where


@pytest.mark.parametrize("cpus, hpet", [(1, None), (3, 0xFED00000)])
def test_firmware_installs_the_same_tables_through_fw_cfg(cpus, hpet):
    desc = PcDescription(cpus=cpus, hpet_base=hpet)
    memory = GuestMemory(8 * MiB)
    dev = FwCfg(cpus=cpus, ram_size=8 * MiB)
    for name, data in acpi_loader.files(desc).items():
        dev.add_file(name, data)
    ports = PortBus()
    dev.register(ports)
    files = fw_cfg_files(ports)
    assert set(files) == {"etc/acpi/rsdp", "etc/acpi/tables", "etc/table-loader"}
    assert len(files["etc/table-loader"]) % 128 == 0
    where = run_loader(files["etc/table-loader"], files, memory)
    assert where["etc/acpi/rsdp"] == 0xF5A40 and where["etc/acpi/tables"] % 64 == 0
    tables = walk(memory, rsdp_at=0xF5A40)                       # every checksum and pointer
    assert {"FACP", "APIC", "DSDT", "FACS"} <= set(tables)
    assert ("HPET" in tables) == (hpet is not None)
    assert len([e for k, e in madt_entries(tables["APIC"]) if k == 0]) == cpus
    dsdt_addr = struct.unpack_from("<I", tables["FACP"], 40)[0]
    assert where["etc/acpi/tables"] <= dsdt_addr < where["etc/acpi/tables"] + len(files["etc/acpi/tables"])


def test_checksum_fields_are_left_to_the_firmware():
    files = acpi_loader.files(PcDescription())
    assert files["etc/acpi/rsdp"][8] == files["etc/acpi/rsdp"][32] == 0
    assert files["etc/acpi/rsdp"][:8] == b"RSD PTR "
