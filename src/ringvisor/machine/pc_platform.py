"""The APIC-era half of the soft engine's PC: what `SoftPlatform(pc=...)`
adds to the 8259 pair and the 8254 when a machine description is given.

- a local APIC per CPU on an APIC bus (devices/lapic.py, apic_bus.py), the
  register page at 0xFEE00000 answering for the running CPU
  (`apic_bus.current`); the bootstrap processor's LINT0 is left in ExtINT
  and LINT1 in NMI mode with the APIC software-enabled, as SeaBIOS leaves
  it, so a guest that never touches the APIC keeps its 8259 interrupts
  (virtual wire mode, as the MP table says);
- the I/O APIC at 0xFEC00000 with the PC's ISA routing (devices/irq_routing.py):
  every ISA device line reaches both the 8259 pair and the I/O APIC;
- the ACPI PM block (devices/acpi_pm.py), QEMU's fw_cfg (devices/fw_cfg.py,
  with etc/e820 and the ACPI tables as QEMU's linker/loader files),
  optionally the HPET (devices/hpet.py; its legacy replacement disconnects
  the PIT from IRQ 0);
- the reset ports 0xCF9 and 0x92 (devices/reset_control.py);
- the 440FX chipset on PCI configuration mechanism #1 (devices/pci_host.py,
  chipset.py): the host bridge at 00:00.0 with the PAM registers that map
  0xC0000-0xFFFFF (devices/pam.py), the PIIX3 ISA bridge at 00:01.0. A
  firmware ROM finds them at their reset values (PAM all 00: reads of the
  BIOS area reach the ROM); without one ringvisor leaves them as a
  firmware that shadowed itself would, 0xC0000-0xFFFFF plain RAM (PAM 0x30,
  0x33). A hard reset through 0xCF9 resets them (PCIRST#); a CPU-only one
  (0xCF9 bit 1 clear, port 0x92) does not;
- the ACPI and MP tables written into guest memory (boot/firmware_tables.py),
  unless a firmware ROM (`--bios`, boot/firmware.py) builds its own.

The CPU side (to be wired with the CPU restructure; nothing here imports
the CPU): `interrupts` is the bootstrap processor's local APIC, which takes
the place of the 8259 pair as the CPU's `interrupts` object
(pending()/acknowledge()); `lapics[i]` is CPU i's, with the MSR hooks and
the NMI/INIT/SIPI signals documented in devices/lapic.py; `on_power_off`
is called when the guest enters ACPI S5, `on_reset(kind)` when it resets
the machine through 0xCF9 (the FADT's reset register) or port 0x92.
"""
from __future__ import annotations

from typing import Callable

from ringvisor.boot import acpi_loader, firmware_tables
from ringvisor.boot.pc_description import PcDescription
from ringvisor.devices import chipset, reset_control
from ringvisor.devices.acpi_pm import AcpiPm
from ringvisor.devices.apic_bus import ApicBus
from ringvisor.devices.fw_cfg import FwCfg
from ringvisor.devices.hpet import Hpet
from ringvisor.devices.ioapic import IoApic
from ringvisor.devices.irq_routing import IsaInterrupts
from ringvisor.devices.lapic import LocalApic, Reg
from ringvisor.devices.pam import Pam
from ringvisor.devices.pci_host import PciHost

SOFT_OFF = 0                      # SLP_TYP of \_S5 in the DSDT (boot/acpi.py)
# What SeaBIOS writes to the bootstrap processor's APIC before the OS runs.
FIRMWARE_SVR = 0x1FF              # software-enabled, spurious vector 0xFF
FIRMWARE_LINT0 = 0x8700           # ExtINT (the 8259 pair)
FIRMWARE_LINT1 = 0x8400           # NMI
# PAM0-PAM6 as ringvisor-as-firmware leaves them: 0xC0000-0xFFFFF read/write RAM.
FIRMWARE_PAM = bytes([0x30] + [0x33] * 6)
PLATFORM_RESETS = ("hard", "full")    # 0xCF9 kinds that assert PCIRST# (the others: INIT only)


class PcPlatform:
    def __init__(self, desc: PcDescription, *, ports, mmio, memory, pic, clock: Callable[[], int],
                 tsc: Callable[[], int] | None = None, memory_map=(), cmdline: bytes | None = None):
        self.desc = desc
        self.apic_bus = ApicBus(mmio)
        self.lapics = [LocalApic(apic_id, bsp=i == 0, clock=clock, tsc=tsc, extint=pic, x2apic=desc.x2apic,
                                 tsc_deadline=desc.tsc_deadline)
                       for i, apic_id in enumerate(desc.apic_ids)]
        for apic in self.lapics:
            self.apic_bus.attach(apic)
        self.ioapic = IoApic(desc.ioapic_id)
        self.apic_bus.attach_ioapic(self.ioapic)
        self.ioapic.register(mmio, desc.ioapic_base)
        self.isa = IsaInterrupts(pic, self.ioapic, desc.overrides)
        self.acpi_pm = AcpiPm(clock=clock, sci=self.isa.irq_line(desc.sci_irq), on_sleep=self._sleep)
        self.acpi_pm.register(ports, desc.pm_base)
        self.fw_cfg = FwCfg(cpus=desc.cpus, ram_size=memory.size, memory=memory,
                            memory_map=memory_map, cmdline=cmdline)
        for name, data in acpi_loader.files(desc).items():
            self.fw_cfg.add_file(name, data)   # for a QEMU-style firmware (--bios)
        self.fw_cfg.register(ports)
        self.hpet = None
        self.pit_connected = True
        if desc.hpet_base is not None:
            self.hpet = Hpet(clock=clock, ioapic_irq=self.ioapic.set_irq, isa_irq=self.isa.set_irq,
                             on_legacy=self._hpet_legacy)
            self.hpet.register(mmio, desc.hpet_base)
        self.pci = PciHost()
        self.pam = Pam(memory)
        self.host_bridge = chipset.host_bridge(self.pam.set_registers)
        self.pci.attach(*chipset.HOST_BRIDGE, self.host_bridge)
        self.pci.attach(*chipset.ISA_BRIDGE, chipset.isa_bridge())
        self.pci.register(ports)
        self.pci.reset()
        if not desc.firmware_rom:
            self.host_bridge.write(chipset.PAM0, 4, int.from_bytes(FIRMWARE_PAM[:4], "little"))
            self.host_bridge.write(chipset.PAM0 + 4, 3, int.from_bytes(FIRMWARE_PAM[4:], "little"))
        # Without a firmware ROM, ringvisor leaves what the firmware would:
        # the ACPI and MP tables, the bootstrap APIC in virtual wire mode.
        self.tables = None if desc.firmware_rom else firmware_tables.install(memory, desc)
        self.on_power_off: Callable[[], None] = lambda: None
        self.on_reset: Callable[[str], None] = lambda kind: None
        self.reset_requests: list[str] = []
        self.reset_control, self.port_a = reset_control.register(ports, self._reset)
        self.power_off_requested = False
        if not desc.firmware_rom:
            self._firmware_virtual_wire(self.lapics[0])

    @staticmethod
    def _firmware_virtual_wire(bsp: LocalApic) -> None:
        bsp.write_register(Reg.SVR, FIRMWARE_SVR)
        bsp.write_register(0x350, FIRMWARE_LINT0)
        bsp.write_register(0x360, FIRMWARE_LINT1)

    # -- interrupt lines ------------------------------------------------------------------
    @property
    def interrupts(self) -> LocalApic:
        return self.lapics[0]

    def irq_line(self, irq: int):
        return self.isa.irq_line(irq)

    def pit_line(self, level: int) -> None:
        """The 8254's OUT0: IRQ 0, unless the HPET replaced it."""
        if self.pit_connected:
            self.isa.set_irq(0, level)

    def _hpet_legacy(self, enabled: bool) -> None:
        self.pit_connected = not enabled
        if enabled:
            self.isa.set_irq(0, 0)

    def attach_cpus(self, cpus) -> None:
        """The CPUs whose memory path the PAM redirects."""
        for cpu in cpus:
            self.pam.attach(cpu)

    def _reset(self, kind: str) -> None:
        self.reset_requests.append(kind)
        if kind in PLATFORM_RESETS:
            self.pci.reset()
        self.on_reset(kind)

    def _sleep(self, slp_typ: int) -> None:
        if slp_typ == SOFT_OFF:
            self.power_off_requested = True
            self.on_power_off()

    # -- virtual time ----------------------------------------------------------------------
    def _timed(self):
        return [d for d in (self.apic_bus, self.acpi_pm, self.hpet) if d is not None]

    def advance_to(self, ns: int) -> None:
        for device in self._timed():
            device.advance_to(ns)

    def next_event_ns(self) -> int | None:
        due = [t for t in (d.next_event_ns() for d in self._timed()) if t is not None]
        return min(due, default=None)

    def statistics(self) -> dict:
        return {
            "cpus": [{"apic_id": a.id, "interrupts": sum(a.stats.delivered.values()),
                      "ipis_sent": sum(a.stats.ipis_sent.values()),
                      "timer_expiries": a.stats.timer_expiries} for a in self.lapics],
            "ioapic_messages": dict(sorted(self.ioapic.messages.items())),
            "fw_cfg_dma_transfers": self.fw_cfg.transfers,
            "pci_config_cycles": self.pci.cycles,
            "pam": self.pam.statistics(),
        }
