"""The kvm engine: guest code runs on the host CPU through /dev/kvm (VT-x,
AMD-V, or PVM on these nested machines), with the in-kernel 8259/IOAPIC/LAPIC
and 8254 PIT, guest RAM registered as one memory slot."""
from __future__ import annotations

from ringvisor.cpu_state import CpuState
from ringvisor.errors import ConfigError
from ringvisor.kvm import backend, cpuid
from ringvisor.kvm import ioctls as I
from ringvisor.kvm.stats import StatsReader, delta
from ringvisor.kvm.system import Kvm
from ringvisor.kvm.vm import Vm


# The per-vCPU counters of KVM's binary statistics `--stats` shows per CPU.
KERNEL_CPU_COUNTERS = ("exits", "io_exits", "mmio_exits", "halt_exits", "halt_wakeup",
                       "irq_injections", "insn_emulation")


class KvmEngine:
    name = "kvm"
    has_interrupt_controller = True   # the in-kernel irqchip and PIT serve the guest

    def __init__(self, memory, ports=None, coalesced_sink=None, cpus: int = 1):
        """`cpus` vCPUs, vcpu id = APIC ID: the bootstrap processor runnable,
        the others waiting for INIT and SIPI in the in-kernel local APIC.
        With several, `ports` and `coalesced_sink` must be safe to call from
        every vCPU's thread (the machine serialises them)."""
        self.backend = backend.detect()
        self.kvm = Kvm()
        self.kvm.require("KVM_CAP_USER_MEMORY", "KVM_CAP_IRQCHIP", "KVM_CAP_PIT2", "KVM_CAP_IMMEDIATE_EXIT")
        limit = self.max_vcpus()
        if not 1 <= cpus <= limit:
            self.kvm.close()
            raise ConfigError(f"--cpus {cpus}: this host's KVM runs 1 to {limit} vCPUs per VM "
                              "(KVM_CAP_MAX_VCPUS)")
        self.vm = Vm.create(self.kvm)
        try:
            self.vm.setup_x86()
            self.vm.create_irqchip()
            self.vm.create_pit()
            self.vm.add_memory(0, memory.size, memory.host_address)
            supported = self.kvm.supported_cpuid()
            self.cpuid_leaf1 = next(((e.eax, e.edx) for e in supported if e.function == 1), (0, 0))
            self.vcpus = [self._create_vcpu(i, supported, ports, coalesced_sink) for i in range(cpus)]
            self.vcpu = self.vcpus[0]
            self.vm_stats = self.vm.stats()
            self.vcpus_stats = [StatsReader.open(self.kvm, v.fd) for v in self.vcpus]
            self.vcpu_stats = self.vcpus_stats[0]
        except BaseException:
            self.close()
            raise
        self._stats_start = self.kernel_stats()
        self.run = self.vcpu.run          # the hot path: no extra call layer

    def max_vcpus(self) -> int:
        """KVM_CAP_MAX_VCPUS, else KVM_CAP_NR_VCPUS, else 4 (api.rst 4.7)."""
        return self.kvm.check_extension(I.KVM_CAP_MAX_VCPUS) or \
            self.kvm.check_extension(I.KVM_CAP_NR_VCPUS) or 4

    def _create_vcpu(self, index: int, supported, ports, coalesced_sink):
        vcpu = self.vm.create_vcpu(index)
        vcpu.set_cpuid(cpuid.guest_cpuid(supported, apic_id=index))
        if index:
            # What KVM gives an AP once the irqchip is in the kernel; said
            # here so the state does not depend on the vCPU creation order.
            vcpu.set_mp_state(I.MP_STATE_UNINITIALIZED)
        vcpu.coalesced_sink = coalesced_sink
        if ports is not None:
            vcpu.attach_ports(ports)
        return vcpu

    def route_isa_irqs_as_a_pc(self) -> None:
        self.vm.route_isa_irqs_as_a_pc()

    def see_every_exit(self) -> None:
        """Return port exits to the machine too (for --trace), instead of
        completing them inside the run loop."""
        for vcpu in self.vcpus:
            vcpu.attach_ports(None)

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

    def cpu_statistics(self) -> list[dict]:
        """Per vCPU what KVM counts (no instruction count: the guest runs on
        the host CPU): its MP state, the exits that reached ringvisor and
        the host kernel's own per-vCPU counters."""
        out = []
        for vcpu, reader in zip(self.vcpus, self.vcpus_stats):
            kernel = reader.read() if reader else {}
            line = {"cpu": vcpu.index, "mp_state": I.MP_STATES.get(vcpu.mp_state(), "?"),
                    "userspace_exits": sum(vcpu.exit_counts)}
            line.update({name: kernel[name] for name in KERNEL_CPU_COUNTERS if name in kernel})
            out.append(line)
        return out

    def close(self) -> None:
        readers = [getattr(self, "vm_stats", None)] + list(getattr(self, "vcpus_stats", ()))
        for reader in readers:
            if reader:
                reader.close()
        self.vm.close()
        self.kvm.close()
