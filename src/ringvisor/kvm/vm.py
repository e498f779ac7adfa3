"""A KVM virtual machine file descriptor: memory slots, the in-kernel irqchip
and PIT, ioeventfds, coalesced I/O zones, vCPUs and VM statistics."""
from __future__ import annotations

import fcntl
import os

from ringvisor.errors import KvmUnavailable
from ringvisor.kvm import ioctls as I
from ringvisor.kvm import structs as S
from ringvisor.kvm.stats import StatsReader
from ringvisor.kvm.system import Kvm, ioctl_struct, ioctl_value
from ringvisor.kvm.vcpu import Vcpu

# Three pages KVM needs for the VMX real-mode TSS and the identity map; placed
# just below the 4 GiB BIOS area, where no guest RAM is (as QEMU does).
TSS_ADDRESS = 0xFFFBD000
IDENTITY_MAP_ADDRESS = 0xFFFBC000


class Vm:
    @classmethod
    def create(cls, kvm: Kvm) -> "Vm":
        return cls(kvm, kvm.create_vm_fd())

    def __init__(self, kvm: Kvm, fd: int):
        self.kvm, self.fd = kvm, fd
        self.slots = 0
        self.irqchip = False
        self.vcpus: list = []
        self._eventfds: list[int] = []
        self._irq = S.kvm_irq_level()

    def check_extension(self, cap: int) -> int:
        return self.kvm.check_extension(cap, self.fd)

    def add_memory(self, guest_phys: int, size: int, host_address: int, readonly: bool = False) -> int:
        region = S.kvm_userspace_memory_region(slot=self.slots, flags=2 if readonly else 0,
                                               guest_phys_addr=guest_phys, memory_size=size,
                                               userspace_addr=host_address)
        ioctl_struct(self.fd, I.KVM_SET_USER_MEMORY_REGION, region, "KVM_SET_USER_MEMORY_REGION")
        self.slots += 1
        return region.slot

    def setup_x86(self) -> None:
        """What every x86 VM needs before its vCPUs run (VT-x real mode areas)."""
        if self.check_extension(I.KVM_CAP_SET_TSS_ADDR):
            ioctl_value(self.fd, I.KVM_SET_TSS_ADDR, TSS_ADDRESS, "KVM_SET_TSS_ADDR")
        if self.check_extension(I.KVM_CAP_SET_IDENTITY_MAP_ADDR):
            ioctl_struct(self.fd, I.KVM_SET_IDENTITY_MAP_ADDR, S.u64(IDENTITY_MAP_ADDRESS),
                         "KVM_SET_IDENTITY_MAP_ADDR")

    def create_irqchip(self) -> None:
        """In-kernel 8259 pair, IOAPIC and local APICs."""
        try:
            fcntl.ioctl(self.fd, I.KVM_CREATE_IRQCHIP, 0)
        except OSError as e:
            raise KvmUnavailable(f"KVM_CREATE_IRQCHIP failed: {e.strerror}") from None
        self.irqchip = True

    def create_pit(self) -> None:
        """In-kernel 8254 PIT on IRQ 0 (needs the irqchip first)."""
        config = S.kvm_pit_config(flags=I.PIT_SPEAKER_DUMMY)
        ioctl_struct(self.fd, I.KVM_CREATE_PIT2, config, "KVM_CREATE_PIT2")

    def route_isa_irqs_as_a_pc(self) -> None:
        """The PC's routing (QEMU's with the kernel irqchip, and what the
        MADT's override says): ISA IRQ 0 (the PIT) reaches I/O APIC pin 2,
        every other GSI below 24 the pin of its number; IRQs 0-15 also reach
        the 8259 pair (KVM's default would send IRQ 0 to pin 0)."""
        routes = [(irq, I.IRQCHIP_PIC_MASTER if irq < 8 else I.IRQCHIP_PIC_SLAVE, irq % 8)
                  for irq in range(16) if irq != 2]
        routes += [(gsi, I.IRQCHIP_IOAPIC, 2 if gsi == 0 else gsi) for gsi in range(24) if gsi != 2]
        table = S.kvm_irq_routing(len(routes))(nr=len(routes))
        for entry, (gsi, chip, pin) in zip(table.entries, routes):
            entry.gsi, entry.type, entry.irqchip, entry.pin = gsi, I.IRQ_ROUTING_IRQCHIP, chip, pin
        ioctl_struct(self.fd, I.KVM_SET_GSI_ROUTING, table, "KVM_SET_GSI_ROUTING")

    def irq_line(self, irq: int, level: int) -> None:
        self._irq.irq, self._irq.level = irq, level
        fcntl.ioctl(self.fd, I.KVM_IRQ_LINE, self._irq)

    def add_ioeventfd(self, port: int, size: int, datamatch: int | None = None, pio: bool = True) -> int:
        """Let the kernel complete guest writes to `port` by signalling an
        eventfd, without an exit to userspace. Returns the eventfd."""
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        flags = (I.IOEVENTFD_FLAG_PIO if pio else 0) | (I.IOEVENTFD_FLAG_DATAMATCH if datamatch is not None else 0)
        req = S.kvm_ioeventfd(datamatch=datamatch or 0, addr=port, len=size, fd=efd, flags=flags)
        try:
            fcntl.ioctl(self.fd, I.KVM_IOEVENTFD, req)
        except OSError as e:
            os.close(efd)
            raise KvmUnavailable(f"KVM_IOEVENTFD at {port:#x} failed: {e.strerror}") from None
        self._eventfds.append(efd)
        return efd

    def add_coalesced_zone(self, addr: int, size: int, pio: bool) -> None:
        """Writes into this zone are queued in a ring instead of exiting;
        the VMM drains the ring at its next exit (reads still exit)."""
        cap = I.KVM_CAP_COALESCED_PIO if pio else I.KVM_CAP_COALESCED_MMIO
        if not self.check_extension(cap):
            raise KvmUnavailable(f"this KVM cannot coalesce {'PIO' if pio else 'MMIO'}")
        zone = S.kvm_coalesced_mmio_zone(addr=addr, size=size, pio=1 if pio else 0)
        ioctl_struct(self.fd, I.KVM_REGISTER_COALESCED_MMIO, zone, "KVM_REGISTER_COALESCED_MMIO")

    def create_vcpu(self, index: int = 0):
        try:
            fd = fcntl.ioctl(self.fd, I.KVM_CREATE_VCPU, index)
        except OSError as e:
            raise KvmUnavailable(f"KVM_CREATE_VCPU failed: {e.strerror}") from None
        vcpu = Vcpu(self, fd, index)
        self.vcpus.append(vcpu)
        return vcpu

    def stats(self):
        return StatsReader.open(self.kvm, self.fd)

    def close(self) -> None:
        for vcpu in self.vcpus:
            vcpu.close()
        for efd in self._eventfds:
            os.close(efd)
        self._eventfds.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
