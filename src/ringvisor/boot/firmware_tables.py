"""Everything a PC's firmware leaves in memory for the OS to find the CPUs
and the interrupt routing: the ACPI tables (boot/acpi.py) and the MP tables
(boot/mptable.py), built at boot for the configured machine
(boot/pc_description.py) and written into guest RAM's reserved
0x9FC00-0xFFFFF window."""
from __future__ import annotations

from ringvisor.boot import acpi, mptable
from ringvisor.boot.acpi import Blobs
from ringvisor.boot.pc_description import PcDescription


def build(desc: PcDescription) -> Blobs:
    return mptable.build(desc, acpi.build(desc))


def install(memory, desc: PcDescription) -> Blobs:
    blobs = build(desc)
    blobs.install(memory)
    return blobs
