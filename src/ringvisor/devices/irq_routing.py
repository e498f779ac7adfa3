"""How a PC wires its ISA interrupt lines to both interrupt controllers.

Every ISA IRQ reaches the 8259 pair as IRQ n and the I/O APIC as a global
system interrupt (GSI): pin n, except that the PIT's IRQ 0 arrives on pin 2
(pin 2 would be the 8259 cascade, which never raises an ISA line). That
exception is what the firmware tables announce as an interrupt source
override (MADT, MP table), as QEMU's `pc` machine and real chipsets do. The
ACPI SCI on IRQ 9 is level-triggered, active high (another override).
The 8259 pair reaches the CPUs through LINT0 in ExtINT mode (virtual wire),
not through an I/O APIC pin.

The overrides are data: the firmware-table builders (boot/acpi.py,
boot/mptable.py) and the wiring read the same table.
"""
from __future__ import annotations

from dataclasses import dataclass

ISA_IRQS = 16

# MPS/ACPI "INTI flags": polarity in bits 1:0, trigger mode in bits 3:2.
CONFORMS = 0
ACTIVE_HIGH, ACTIVE_LOW = 0b01, 0b11
EDGE, LEVEL = 0b01 << 2, 0b11 << 2


@dataclass(frozen=True)
class Override:
    isa_irq: int
    gsi: int
    flags: int


PC_OVERRIDES = (
    Override(isa_irq=0, gsi=2, flags=CONFORMS),           # the PIT
    Override(isa_irq=9, gsi=9, flags=ACTIVE_HIGH | LEVEL),  # the ACPI SCI
)
SCI_IRQ = 9


def gsi_of(irq: int, overrides=PC_OVERRIDES) -> int:
    for o in overrides:
        if o.isa_irq == irq:
            return o.gsi
    return irq


def is_level(irq: int, overrides=PC_OVERRIDES) -> bool:
    return any(o.isa_irq == irq and o.flags & LEVEL == LEVEL for o in overrides)


class IsaInterrupts:
    """ISA IRQ lines driving the 8259 pair and the I/O APIC together."""

    def __init__(self, pic, ioapic, overrides=PC_OVERRIDES):
        self.pic, self.ioapic, self.overrides = pic, ioapic, overrides

    def set_irq(self, irq: int, level: int) -> None:
        if not 0 <= irq < ISA_IRQS:
            raise ValueError(f"ISA IRQ {irq} is not 0..15")
        self.pic.set_irq(irq, level)
        self.ioapic.set_irq(gsi_of(irq, self.overrides), level)

    def irq_line(self, irq: int):
        if not 0 <= irq < ISA_IRQS:
            raise ValueError(f"ISA IRQ {irq} is not 0..15")
        return lambda level: self.set_irq(irq, level)
