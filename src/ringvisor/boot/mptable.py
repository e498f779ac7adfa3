"""The Intel MultiProcessor Specification 1.4 tables for the configured machine.

The MP floating pointer structure (16 bytes, in the last KiB of base memory)
points to the MP configuration table: its header, then the entries in the
order the spec requires: one processor entry per CPU (the first is the
bootstrap processor), the ISA bus, the I/O APIC, an I/O interrupt entry per
ISA IRQ (IRQ 0 on pin 2, the SCI level-triggered: the same overrides as the
MADT, devices/irq_routing.py), and the local interrupts every CPU takes in
virtual wire mode: ExtINT on LINT0, NMI on LINT1. Feature byte 2 leaves
IMCRP clear: the machine boots in virtual wire mode, there is no IMCR.
"""
from __future__ import annotations

import struct

from ringvisor.boot.acpi import Blobs, checksum
from ringvisor.boot.pc_description import MP_FLOATING_ADDRESS, PcDescription
from ringvisor.devices.irq_routing import ISA_IRQS, gsi_of
from ringvisor.devices.ioapic import VERSION as IOAPIC_VERSION
from ringvisor.devices.apic_defs import VERSION as LAPIC_VERSION

SPEC_REVISION = 4                   # MP spec 1.4
PROCESSOR, BUS, IOAPIC, IO_INTERRUPT, LOCAL_INTERRUPT = range(5)
CPU_ENABLED, CPU_BOOTSTRAP = 1, 2
INT, NMI, SMI, EXTINT = range(4)
ISA_BUS_ID = 0
ALL_LOCAL_APICS = 0xFF
CASCADE_IRQ = 2


def _flags_of(irq: int, desc: PcDescription) -> int:
    for o in desc.overrides:
        if o.isa_irq == irq:
            return o.flags
    return 0


def config_table(desc: PcDescription) -> bytes:
    entries = []
    for i, apic_id in enumerate(desc.apic_ids):
        flags = CPU_ENABLED | (CPU_BOOTSTRAP if i == 0 else 0)
        entries.append(struct.pack("<BBBBII8s", PROCESSOR, apic_id, LAPIC_VERSION, flags,
                                   desc.cpu_signature, desc.cpu_features, b"\0" * 8))
    entries.append(struct.pack("<BB6s", BUS, ISA_BUS_ID, b"ISA   "))
    entries.append(struct.pack("<BBBBI", IOAPIC, desc.ioapic_id, IOAPIC_VERSION, 1, desc.ioapic_base))
    for irq in range(ISA_IRQS):
        if irq == CASCADE_IRQ:
            continue                        # the 8259 cascade: no ISA device raises it
        entries.append(struct.pack("<BBHBBBB", IO_INTERRUPT, INT, _flags_of(irq, desc), ISA_BUS_ID,
                                   irq, desc.ioapic_id, gsi_of(irq, desc.overrides)))
    for kind, lint in ((EXTINT, 0), (NMI, 1)):
        entries.append(struct.pack("<BBHBBBB", LOCAL_INTERRUPT, kind, 0, ISA_BUS_ID, 0,
                                   ALL_LOCAL_APICS, lint))
    body = b"".join(entries)
    header = bytearray(struct.pack("<4sHBB8s12sIHHIHBB", b"PCMP", 44 + len(body), SPEC_REVISION, 0,
                                   desc.oem_id.encode().ljust(8), b"ringvisor".ljust(12), 0, 0,
                                   len(entries), desc.lapic_base, 0, 0, 0))
    data = header + body
    data[7] = checksum(data)
    return bytes(data)


def floating_pointer(config_address: int) -> bytes:
    data = bytearray(struct.pack("<4sIBBBBB3s", b"_MP_", config_address, 1, SPEC_REVISION, 0, 0,
                                 0, b"\0\0\0"))
    data[10] = checksum(data)
    return bytes(data)


def build(desc: PcDescription, blobs: Blobs) -> Blobs:
    """Add the MP configuration table to `blobs` and the floating pointer
    at 0x9FC00."""
    config = blobs.place("MP configuration table", config_table(desc))
    blobs.placed["MP floating pointer"] = (MP_FLOATING_ADDRESS, floating_pointer(config))
    return blobs
