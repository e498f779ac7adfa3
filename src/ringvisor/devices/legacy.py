"""Legacy PC ports a guest commonly touches that ringvisor deliberately does
not model. Listing them by name on the port bus makes such accesses quiet
(reads all ones, writes dropped) and tells them apart from truly unknown
ports, which the bus counts and reports.

`register_ignored(bus)` lists every entry except the ports a device has
already claimed, so call it after the machine registered its devices.
"""
from __future__ import annotations

from typing import Iterable, NamedTuple


class Ignored(NamedTuple):
    base: int
    length: int
    name: str


IGNORED_PORTS: tuple[Ignored, ...] = (
    Ignored(0x0000, 0x10, "DMA controller 1 (8237)"),
    Ignored(0x0020, 2, "master PIC (8259), not modelled here"),
    # Super I/O chips answer index/data pairs here; Debian's kernel probes
    # both at boot (measured: 20 writes, 4 reads each); there is none.
    Ignored(0x002E, 2, "Super I/O configuration (primary)"),
    Ignored(0x0040, 4, "PIT (8254), not modelled here"),
    Ignored(0x004E, 2, "Super I/O configuration (secondary)"),
    # 0x61 also holds the PIT channel 2 gate (bit 0) and output (bit 5); with
    # the port ignored, bit 5 reads 1 so calibration loops terminate.
    Ignored(0x0061, 1, "system control port B (speaker, PIT ch2 gate)"),
    Ignored(0x0060, 1, "i8042 keyboard controller data"),
    Ignored(0x0064, 1, "i8042 keyboard controller command/status"),
    Ignored(0x0070, 2, "CMOS/RTC index and data"),
    Ignored(0x0080, 1, "POST diagnostic port"),
    Ignored(0x0081, 0xF, "DMA page registers"),
    Ignored(0x0092, 1, "system control port A (fast A20, reset)"),
    Ignored(0x00A0, 2, "slave PIC (8259), not modelled here"),
    Ignored(0x00C0, 0x20, "DMA controller 2 (8237)"),
    Ignored(0x00F0, 2, "math coprocessor error / reset"),
    Ignored(0x0170, 8, "secondary ATA"),
    Ignored(0x01F0, 8, "primary ATA"),
    Ignored(0x0201, 1, "game port"),
    Ignored(0x0278, 3, "LPT2"),
    Ignored(0x02E8, 8, "COM4"),
    Ignored(0x02F8, 8, "COM2"),
    Ignored(0x0376, 1, "secondary ATA control"),
    Ignored(0x0378, 3, "LPT1"),
    Ignored(0x03B0, 0x10, "MDA/VGA monochrome registers"),
    Ignored(0x03C0, 0x20, "VGA registers"),
    Ignored(0x03E8, 8, "COM3"),
    # The floppy controller decodes 0x3F0-0x3F5 and 0x3F7; 0x3F6 belongs to
    # the primary ATA device control register.
    Ignored(0x03F0, 6, "floppy controller"),
    Ignored(0x03F6, 1, "primary ATA control"),
    Ignored(0x03F7, 1, "floppy digital input register"),
    Ignored(0x03F8, 8, "COM1"),
    Ignored(0x04D0, 2, "ELCR (edge/level control for the PICs)"),
    Ignored(0x0CF8, 8, "PCI configuration mechanism #1"),
)


def _free_runs(bus, base: int, length: int) -> Iterable[tuple[int, int]]:
    """Sub-ranges of [base, base+length) no device or earlier listing claims."""
    start = None
    for port in range(base, base + length):
        taken = bus.readers[port] is not None
        if not taken and start is None:
            start = port
        elif taken and start is not None:
            yield start, port - start
            start = None
    if start is not None:
        yield start, base + length - start


def register_ignored(bus, exclude: Iterable[tuple[int, int]] = (),
                     table: Iterable[Ignored] = IGNORED_PORTS) -> list[Ignored]:
    """List the table's ports on `bus` as ignored, skipping ports already
    claimed on the bus and the (base, length) ranges in `exclude`.
    Returns what was listed."""
    excluded = set()
    for base, length in exclude:
        excluded.update(range(base, base + length))
    listed = []
    for entry in table:
        for base, length in _free_runs(bus, entry.base, entry.length):
            ports = [p for p in range(base, base + length) if p not in excluded]
            for run_base, run_length in _runs(ports):
                bus.ignore(run_base, run_length, entry.name)
                listed.append(Ignored(run_base, run_length, entry.name))
    return listed


def _runs(ports: list[int]) -> Iterable[tuple[int, int]]:
    start = prev = None
    for p in ports:
        if start is None:
            start = prev = p
        elif p == prev + 1:
            prev = p
        else:
            yield start, prev - start + 1
            start = prev = p
    if start is not None:
        yield start, prev - start + 1
