"""The kvm engine: guest code runs on the host CPU through /dev/kvm (VT-x,
AMD-V, or PVM on these nested machines), with the in-kernel 8259/IOAPIC/LAPIC
and 8254 PIT, guest RAM registered as one memory slot."""
from __future__ import annotations

from ringvisor.cpu_state import CpuState
from ringvisor.kvm import backend, cpuid
from ringvisor.kvm import ioctls as I
from ringvisor.kvm.stats import StatsReader, delta
from ringvisor.kvm.system import Kvm
from ringvisor.kvm.vm import Vm


class KvmEngine:
    name = "kvm"
    has_interrupt_controller = True   # the in-kernel irqchip and PIT serve the guest

    def __init__(self, memory, ports=None, coalesced_sink=None):
        self.backend = backend.detect()
        self.kvm = Kvm()
        self.kvm.require("KVM_CAP_USER_MEMORY", "KVM_CAP_IRQCHIP", "KVM_CAP_PIT2", "KVM_CAP_IMMEDIATE_EXIT")
        self.vm = Vm.create(self.kvm)
        try:
            self.vm.setup_x86()
            self.vm.create_irqchip()
            self.vm.create_pit()
            self.vm.add_memory(0, memory.size, memory.host_address)
            self.vcpu = self.vm.create_vcpu(0)
            self.vcpu.set_cpuid(cpuid.guest_cpuid(self.kvm.supported_cpuid()))
            self.vcpu.coalesced_sink = coalesced_sink
            if ports is not None:
                self.vcpu.attach_ports(ports)
            self.vm_stats = self.vm.stats()
            self.vcpu_stats = StatsReader.open(self.kvm, self.vcpu.fd)
        except BaseException:
            self.close()
            raise
        self._stats_start = self.kernel_stats()
        self.run = self.vcpu.run          # the hot path: no extra call layer

    def see_every_exit(self) -> None:
        """Return port exits to the machine too (for --trace), instead of
        completing them inside the run loop."""
        self.vcpu.attach_ports(None)

    def irq_line(self, irq: int):
        """A callable `irq(level)` that drives guest IRQ line `irq`."""
        vm = self.vm
        return lambda level: vm.irq_line(irq, level)

    def coalesce_port(self, port: int, length: int) -> None:
        self.vm.add_coalesced_zone(port, length, pio=True)

    def set_state(self, state: CpuState) -> None:
        self.vcpu.set_state(state)

    def get_state(self) -> CpuState:
        return self.vcpu.get_state()

    def halted(self) -> bool:
        return self.vcpu.mp_state() == I.MP_STATE_HALTED

    def request_stop(self) -> None:
        self.vcpu.request_stop()

    def kernel_stats(self) -> dict[str, dict[str, int]]:
        return {"vm": self.vm_stats.read() if self.vm_stats else {},
                "vcpu": self.vcpu_stats.read() if self.vcpu_stats else {}}

    def kernel_stats_delta(self) -> dict[str, dict[str, int]]:
        now = self.kernel_stats()
        return {k: delta(now[k], self._stats_start[k]) for k in now}

    def userspace_exits(self) -> dict[str, int]:
        return {I.EXIT_REASONS.get(r, str(r)): n for r, n in enumerate(self.vcpu.exit_counts) if n}

    def close(self) -> None:
        for reader in (getattr(self, "vm_stats", None), getattr(self, "vcpu_stats", None)):
            if reader:
                reader.close()
        self.vm.close()
        self.kvm.close()
