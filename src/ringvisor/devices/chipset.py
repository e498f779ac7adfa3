"""The pc machine's chipset as PCI functions: QEMU's `pc` machine, an Intel
440FX PCIset.

- 00:00.0, the 82441FX PCI and Memory Controller (host bridge): vendor
  8086, device 1237, revision 02, class 06/00/00. Its PAM registers
  (0x59-0x5F) decide where reads and writes of 0xC0000-0xFFFFF go
  (devices/pam.py); SMRAM (0x72) is stored (no SMM on this CPU).
- 00:01.0, the 82371SB PIIX3 PCI-to-ISA bridge: vendor 8086, device 7000,
  class 06/01/00, a multifunction header (QEMU puts IDE, USB and ACPI
  behind it as functions 1-3; this machine implements function 0 only, so
  the others answer with a master abort, vendor 0xFFFF).

Reset values are the datasheets' (82441FX: 290549; 82371SB: 290550) for the
registers listed; the registers not listed are reserved or model nothing
here and read 0. Writable masks follow the datasheets' R/W bits where the
register has a function here; for the PIIX3's configuration registers whose
hardware this machine does not have (PIRQ routing, SMI, DMA), software may
write the defined bits and reads them back.
"""
from __future__ import annotations

from typing import Callable

from ringvisor.devices.pci_config import PciFunction, Register, header

HOST_BRIDGE = (0, 0)             # (device, function) on bus 0
ISA_BRIDGE = (1, 0)

PAM0, PAM_LAST = 0x59, 0x5F
SMRAM = 0x72

# QEMU gives every PCI function its subsystem IDs (vendor 1AF4, Red Hat;
# device 1100): firmware tells QEMU's machines by them (SeaBIOS: "Running
# on QEMU (i440fx)"). On the real chips these bytes are reserved (read 0).
QEMU_SUBSYSTEM = (
    Register(0x2C, 2, 0x1AF4, name="SVID"),
    Register(0x2E, 2, 0x1100, name="SID"),
)

I440FX_REGISTERS = header(0x8086, 0x1237, 0x02, 0x060000, command=0x0006, command_writable=0x0102,
                          status=0x0280, status_clear=0xF900, header_type=0x00) + QEMU_SUBSYSTEM + (
    Register(0x0D, 1, 0x00, 0xF8, name="MLT"),          # master latency timer
    Register(0x50, 2, 0x0000, 0x73F0, name="PMCCFG"),
    Register(0x53, 1, 0x80, 0xFF, name="DBC"),          # data buffering control
    Register(0x57, 1, 0x01, 0xFF, name="DRAMC"),
    Register(0x58, 1, 0x10, 0xFF, name="DRAMT"),
    Register(PAM0, 1, 0x00, 0x30, name="PAM0"),         # 0xF0000-0xFFFFF: bits 5:4
    *(Register(PAM0 + i, 1, 0x00, 0x33, name=f"PAM{i}") for i in range(1, 7)),
    *(Register(0x60 + i, 1, 0x01, 0xFF, name=f"DRB{i}") for i in range(8)),
    Register(0x71, 1, 0x10, 0xFF, name="CLT"),
    Register(SMRAM, 1, 0x02, 0x78, name="SMRAM"),        # C_BASE_SEG 010 (0xA0000) fixed
)

PIIX3_REGISTERS = header(0x8086, 0x7000, 0x00, 0x060100, command=0x0007, command_writable=0x0108,
                         status=0x0200, status_clear=0x7800, header_type=0x80) + QEMU_SUBSYSTEM + (
    Register(0x4C, 1, 0x4D, 0xFF, name="IORT"),          # ISA I/O recovery timer
    Register(0x4E, 2, 0x0003, 0x07FF, name="XBCS"),      # X-bus chip select
    *(Register(0x60 + i, 1, 0x80, 0x8F, name=f"PIRQRC{'ABCD'[i]}") for i in range(4)),
    Register(0x69, 1, 0x02, 0xFE, name="TOM"),           # top of memory (ISA DMA)
    Register(0x6A, 2, 0x0000, 0x00FF, name="MSTAT"),
    Register(0x70, 1, 0x80, 0xCF, name="MBIRQ0"),
    Register(0x76, 1, 0x0C, 0x8F, name="MBDMA0"),
    Register(0x77, 1, 0x0C, 0x8F, name="MBDMA1"),
    Register(0x78, 2, 0x0002, 0xFFF3, name="PCSC"),
    Register(0x80, 1, 0x00, 0x7F, name="APICBASE"),
    Register(0x82, 1, 0x00, 0x0F, name="DLC"),           # deterministic latency control
    Register(0xA0, 1, 0x08, 0xFF, name="SMICNTL"),
    Register(0xA2, 2, 0x0000, 0x00FF, name="SMIEN"),
    Register(0xA4, 4, 0x00000000, 0x000FFFFF, name="SEE"),
    Register(0xA8, 1, 0x0F, 0xFF, name="FTMR"),
    Register(0xAA, 2, 0x0000, 0x01FF, name="SMIREQ"),
    Register(0xAC, 1, 0x00, 0xFF, name="CTLTMR"),
    Register(0xAE, 1, 0x00, 0xFF, name="CTHTMR"),
)


def host_bridge(on_pam: Callable[[bytes], None]) -> PciFunction:
    """The 82441FX; `on_pam(pam_bytes)` hears PAM0-PAM6 after any of them changed."""
    fn = None

    def written(offset: int, size: int) -> None:
        if offset <= PAM_LAST and offset + size > PAM0:
            on_pam(bytes(fn.config[PAM0:PAM_LAST + 1]))
    fn = PciFunction("82441FX host bridge", I440FX_REGISTERS, written)
    return fn


def isa_bridge() -> PciFunction:
    return PciFunction("82371SB PIIX3 ISA bridge", PIIX3_REGISTERS)
