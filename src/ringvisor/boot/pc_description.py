"""The machine the firmware tables describe: CPUs, interrupt controllers,
the ACPI register block and where the tables go in guest memory.

One description feeds the ACPI tables (boot/acpi.py), the MP table
(boot/mptable.py) and fw_cfg (devices/fw_cfg.py), so they cannot disagree.

Placement: the tables live in 0x9FC00-0xFFFFF, which the memory map already
reports as reserved (boot/layout.py) and no loader claims:
- the MP floating pointer in the last KiB of base memory (0x9FC00), one of
  the three places the MP spec 1.4 (4.) lets an OS search;
- the RSDP at 0xE0000, on a 16-byte boundary inside 0xE0000-0xFFFFF where
  ACPI (5.2.5.1) has the OS search; the other ACPI tables and the MP
  configuration table follow it in 0xE0000-0xEFFFF, leaving 0xF0000-0xFFFFF
  to a BIOS image.
"""
from __future__ import annotations

from dataclasses import dataclass

from ringvisor.devices.irq_routing import PC_OVERRIDES, SCI_IRQ, Override
from ringvisor.errors import ConfigError

LAPIC_BASE = 0xFEE00000
IOAPIC_BASE = 0xFEC00000
IOAPIC_PINS = 24
RESET_PORT = 0xCF9               # the chipset's reset control register
PM_BASE = 0x600                  # QEMU's PIIX4 PM I/O base: PM1a event, control, timer
PM1_EVT_LEN, PM1_CNT_LEN, PM_TMR_LEN = 4, 2, 4
MAX_CPUS = 254                   # xAPIC IDs 0..254 (0xFF is the broadcast ID)

MP_FLOATING_ADDRESS = 0x9FC00
ACPI_AREA = (0xE0000, 0xF0000)

# The soft CPU's CPUID.1 (cpu/system.py): a P54C-class signature; the
# feature flags the tables report add the APIC (bit 9) it gains here.
CPU_SIGNATURE = 0x0000052C
CPU_FEATURES = (1 << 3) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 9) | (1 << 11) | (1 << 13) | (1 << 15)


@dataclass(frozen=True)
class PcDescription:
    cpus: int = 1
    lapic_base: int = LAPIC_BASE
    ioapic_base: int = IOAPIC_BASE
    ioapic_pins: int = IOAPIC_PINS
    overrides: tuple[Override, ...] = PC_OVERRIDES
    sci_irq: int = SCI_IRQ
    pm_base: int = PM_BASE
    reset_port: int = RESET_PORT
    hpet_base: int | None = None
    x2apic: bool = False             # the CPUs offer x2APIC mode (CPUID.1:ECX[21])
    tsc_deadline: bool = True        # the APIC timer's TSC-deadline mode (CPUID.1:ECX[24])
    cpu_signature: int = CPU_SIGNATURE
    cpu_features: int = CPU_FEATURES
    oem_id: str = "RVISOR"
    oem_table_id: str = "RINGVSR"
    # A firmware ROM (`run --bios`) builds its own tables from fw_cfg and sets
    # up the APIC itself; without one, ringvisor does what that firmware would.
    firmware_rom: bool = False

    def __post_init__(self):
        if not 1 <= self.cpus <= MAX_CPUS:
            raise ConfigError(f"{self.cpus} CPUs: an xAPIC machine has 1 to {MAX_CPUS}")

    @property
    def apic_ids(self) -> tuple[int, ...]:
        return tuple(range(self.cpus))

    @property
    def ioapic_id(self) -> int:
        """After the CPUs' IDs as SeaBIOS numbers it, while that fits the
        I/O APIC's 4-bit ID; 0 otherwise (xAPIC messages do not share IDs)."""
        return self.cpus if self.cpus < 16 else 0

    @property
    def pm1a_evt(self) -> int:
        return self.pm_base

    @property
    def pm1a_cnt(self) -> int:
        return self.pm_base + PM1_EVT_LEN

    @property
    def pm_tmr(self) -> int:
        return self.pm_base + 8
