"""ACPI tables for the configured machine (ACPI specification, chapter 5).

RSDP (revision 2) -> RSDT and XSDT -> FADT, MADT and, with an HPET, the
HPET table; the FADT points to the FACS and the DSDT. What they say:
- MADT: one enabled local APIC per CPU (ACPI processor UID = APIC ID), the
  I/O APIC with GSI base 0, the PC's interrupt source overrides
  (devices/irq_routing.py), and LINT1 as NMI on every CPU; PCAT_COMPAT is
  set because the 8259 pair is present.
- FADT (revision 3, the ACPI 2.0 layout with 64-bit X_ fields): the PM1a
  event and control blocks and the PM timer at the description's PM base
  (devices/acpi_pm.py), a 24-bit timer, SCI on IRQ 9. There is no SMI
  command port: the machine is always in ACPI mode (SCI_EN reads 1). The
  reset register is 0xCF9 with value 0x06 (devices/reset_control.py).
  No C2/C3, no 8042, no VGA, no MSI (there is no PCI).
- DSDT: \\_S5 (soft-off: SLP_TYP 0, as on QEMU's PIIX4), and under \\_SB a
  processor device (ACPI0007) per CPU and the legacy devices that exist:
  the 8259 pair, the 8254 PIT, COM1 and, with an HPET, the HPET.

`build(desc)` lays everything out from 0xE0000 (boot/pc_description.py) and
returns the blobs with their addresses; `install(memory)` writes them.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ringvisor.boot import aml
from ringvisor.boot.pc_description import (
    ACPI_AREA, PM1_CNT_LEN, PM1_EVT_LEN, PM_TMR_LEN, PcDescription,
)
from ringvisor.errors import ConfigError

CREATOR_ID = b"RVSR"
CREATOR_REVISION = 1
HEADER_SIZE = 36

FADT_REVISION, FADT_SIZE = 3, 244
MADT_REVISION, DSDT_REVISION, HPET_REVISION = 1, 2, 1

# FADT flags (ACPI 5.2.9, Table 5.10) and IA-PC boot architecture flags (5.2.9.3).
FADT_WBINVD, FADT_PROC_C1, FADT_PWR_BUTTON, FADT_SLP_BUTTON = 1 << 0, 1 << 2, 1 << 4, 1 << 5
FADT_RESET_REG_SUP = 1 << 10
RESET_VALUE = 0x06                # SYS_RST | RST_CPU (devices/reset_control.py)
IAPC_LEGACY_DEVICES, IAPC_VGA_NOT_PRESENT, IAPC_MSI_NOT_SUPPORTED = 1 << 0, 1 << 2, 1 << 3
MADT_PCAT_COMPAT = 1
MADT_LAPIC, MADT_IOAPIC, MADT_OVERRIDE, MADT_LAPIC_NMI = 0, 1, 2, 4
LAPIC_ENABLED = 1
ALL_PROCESSORS = 0xFF
GAS_SYSTEM_MEMORY, GAS_SYSTEM_IO = 0, 1
ACCESS_BYTE, ACCESS_WORD, ACCESS_DWORD = 1, 2, 3

HPET_LENGTH = 0x400
HPET_BLOCK_ID = 0x8086A201       # Intel, 64-bit counter, 3 comparators, legacy replacement


def checksum(data: bytes) -> int:
    return -sum(data) & 0xFF


def _fixed(text: str, size: int) -> bytes:
    return text.encode("ascii")[:size].ljust(size, b" ")


def table(signature: bytes, revision: int, body: bytes, desc: PcDescription) -> bytes:
    """A system description table: the 36-byte header, then `body`."""
    header = struct.pack("<4sIBB6s8sI4sI", signature, HEADER_SIZE + len(body), revision, 0,
                         _fixed(desc.oem_id, 6), _fixed(desc.oem_table_id, 8), 1,
                         CREATOR_ID, CREATOR_REVISION)
    data = bytearray(header + body)
    data[9] = checksum(data)
    return bytes(data)


def gas(space: int, bits: int, address: int, access: int = 0) -> bytes:
    """Generic Address Structure (5.2.3.2)."""
    return struct.pack("<BBBBQ", space, bits, 0, access, address)


def rsdp(rsdt: int, xsdt: int, desc: PcDescription) -> bytes:
    data = bytearray(struct.pack("<8sB6sBIIQB3s", b"RSD PTR ", 0, _fixed(desc.oem_id, 6), 2,
                                 rsdt, 36, xsdt, 0, b"\0\0\0"))
    data[8] = checksum(data[:20])
    data[32] = checksum(data)
    return bytes(data)


def facs() -> bytes:
    """FACS (5.2.10): no checksum; version 2; the OS owns the waking vector."""
    return struct.pack("<4sIIIIIQB3sI24s", b"FACS", 64, 0, 0, 0, 0, 0, 2, b"\0\0\0", 0, b"\0" * 24)


def fadt(desc: PcDescription, facs_addr: int, dsdt_addr: int) -> bytes:
    body = bytearray(FADT_SIZE - HEADER_SIZE)

    def put(offset: int, fmt: str, *values) -> None:
        struct.pack_into("<" + fmt, body, offset - HEADER_SIZE, *values)
    put(36, "II", facs_addr, dsdt_addr)
    put(46, "H", desc.sci_irq)
    put(56, "I", desc.pm1a_evt)
    put(64, "I", desc.pm1a_cnt)
    put(76, "I", desc.pm_tmr)
    put(88, "BBBB", PM1_EVT_LEN, PM1_CNT_LEN, 0, PM_TMR_LEN)
    put(96, "HH", 101, 1001)                   # C2, C3 latencies: not supported
    put(109, "H", IAPC_LEGACY_DEVICES | IAPC_VGA_NOT_PRESENT | IAPC_MSI_NOT_SUPPORTED)
    put(112, "I", FADT_WBINVD | FADT_PROC_C1 | FADT_PWR_BUTTON | FADT_SLP_BUTTON | FADT_RESET_REG_SUP)
    body[116 - HEADER_SIZE:128 - HEADER_SIZE] = gas(GAS_SYSTEM_IO, 8, desc.reset_port, ACCESS_BYTE)
    put(128, "B", RESET_VALUE)
    put(132, "QQ", facs_addr, dsdt_addr)
    body[148 - HEADER_SIZE:160 - HEADER_SIZE] = gas(GAS_SYSTEM_IO, 8 * PM1_EVT_LEN, desc.pm1a_evt, ACCESS_WORD)
    body[172 - HEADER_SIZE:184 - HEADER_SIZE] = gas(GAS_SYSTEM_IO, 8 * PM1_CNT_LEN, desc.pm1a_cnt, ACCESS_WORD)
    body[208 - HEADER_SIZE:220 - HEADER_SIZE] = gas(GAS_SYSTEM_IO, 8 * PM_TMR_LEN, desc.pm_tmr, ACCESS_DWORD)
    return table(b"FACP", FADT_REVISION, bytes(body), desc)


def madt(desc: PcDescription) -> bytes:
    body = struct.pack("<II", desc.lapic_base, MADT_PCAT_COMPAT)
    for apic_id in desc.apic_ids:
        body += struct.pack("<BBBBI", MADT_LAPIC, 8, apic_id, apic_id, LAPIC_ENABLED)
    body += struct.pack("<BBBBII", MADT_IOAPIC, 12, desc.ioapic_id, 0, desc.ioapic_base, 0)
    for o in desc.overrides:
        body += struct.pack("<BBBBIH", MADT_OVERRIDE, 10, 0, o.isa_irq, o.gsi, o.flags)
    body += struct.pack("<BBBHB", MADT_LAPIC_NMI, 6, ALL_PROCESSORS, 0, 1)
    return table(b"APIC", MADT_REVISION, body, desc)


def hpet(desc: PcDescription) -> bytes:
    body = struct.pack("<I", HPET_BLOCK_ID) + gas(GAS_SYSTEM_MEMORY, 64, desc.hpet_base) \
        + struct.pack("<BHB", 0, 0x80, 0)
    return table(b"HPET", HPET_REVISION, body, desc)


def dsdt(desc: PcDescription) -> bytes:
    devices = [aml.device(f"C{apic_id:03X}", aml.name("_HID", aml.string("ACPI0007")),
                          aml.name("_UID", aml.integer(apic_id)))
               for apic_id in desc.apic_ids]
    devices += [
        aml.device("PIC", aml.name("_HID", aml.eisa_id("PNP0000")),
                   aml.name("_CRS", aml.resource_template(aml.io_port(0x20, 2), aml.io_port(0xA0, 2),
                                                          aml.irq_no_flags(2)))),
        aml.device("TMR", aml.name("_HID", aml.eisa_id("PNP0100")),
                   aml.name("_CRS", aml.resource_template(aml.io_port(0x40, 4), aml.irq_no_flags(0)))),
        aml.device("COM1", aml.name("_HID", aml.eisa_id("PNP0501")), aml.name("_UID", aml.integer(1)),
                   aml.name("_CRS", aml.resource_template(aml.io_port(0x3F8, 8), aml.irq_no_flags(4)))),
    ]
    if desc.hpet_base is not None:
        devices.append(aml.device(
            "HPET", aml.name("_HID", aml.eisa_id("PNP0103")), aml.name("_UID", aml.integer(0)),
            aml.name("_CRS", aml.resource_template(aml.memory32_fixed(desc.hpet_base, HPET_LENGTH, False)))))
    body = aml.name("\\_S5", aml.package(*(aml.integer(0),) * 4)) + aml.scope("\\_SB", *devices)
    return table(b"DSDT", DSDT_REVISION, body, desc)


@dataclass
class Blobs:
    """Byte blobs placed one after the other in a guest-physical window."""
    start: int
    limit: int
    placed: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    end: int = 0

    def __post_init__(self):
        self.end = self.start

    def place(self, what: str, data: bytes, align: int = 16) -> int:
        addr = -(-self.end // align) * align
        if addr + len(data) > self.limit:
            raise ConfigError(f"the firmware tables do not fit below {self.limit:#x} ({what})")
        self.placed[what] = (addr, data)
        self.end = addr + len(data)
        return addr

    def install(self, memory) -> None:
        for addr, data in self.placed.values():
            memory.write(addr, data)


def build(desc: PcDescription, blobs: Blobs | None = None) -> Blobs:
    """Every ACPI table, placed from the start of the ACPI area; the RSDP first."""
    blobs = blobs or Blobs(*ACPI_AREA)
    rsdp_addr = blobs.place("RSDP", bytes(36))
    facs_addr = blobs.place("FACS", facs(), align=64)
    dsdt_addr = blobs.place("DSDT", dsdt(desc))
    entries = [blobs.place("FACP", fadt(desc, facs_addr, dsdt_addr)), blobs.place("APIC", madt(desc))]
    if desc.hpet_base is not None:
        entries.append(blobs.place("HPET", hpet(desc)))
    rsdt = blobs.place("RSDT", table(b"RSDT", 1, struct.pack(f"<{len(entries)}I", *entries), desc))
    xsdt = blobs.place("XSDT", table(b"XSDT", 1, struct.pack(f"<{len(entries)}Q", *entries), desc))
    blobs.placed["RSDP"] = (rsdp_addr, rsdp(rsdt, xsdt, desc))
    return blobs
