"""The composition root: one run's configuration turned into an engine, a
monitor (where the technique has one) and a machine, wired together.

This is the only module that knows every layer. The machine gets its engine
from here as a factory and never imports a technique; the monitors get the
machine they serve (its memory, layout, buses and soft platform) as an
argument and never import the machine's module (docs/architecture.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ringvisor import monitors
from ringvisor.errors import ConfigError
from ringvisor.machine.machine import Machine, MachineConfig


PC_TECHNIQUES = ("native", "hw", "trap", "bt")      # the soft engine's default machine is pc under these


@dataclass
class VmConfig:
    """Everything `ringvisor run` decides: the guest, the engine, the
    technique, and the machine's size and limits."""
    kernel: str
    engine: str = "kvm"
    technique: str = "hw"          # native, hw, or a monitor's: trap, bt, pv
    ring: int = 1                  # trap: the ring the guest kernel is deprivileged to
    paging: str = "ept"            # hw on the soft engine: ept (nested paging) or shadow
    memory: int = 128 << 20         # QEMU's pc machine default
    cmdline: str = ""
    modules: tuple[str, ...] = ()
    image_format: str = "auto"
    timeout: float | None = None
    machine: str | None = None     # soft engine: "pc" (APICs, firmware tables) or "isa" (1990 PC)
    cpus: int = 1                  # soft (pc machine): deterministic quanta; kvm: a thread per vCPU
    bios: str | None = None        # soft engine, native: a firmware ROM instead of a kernel (boot/firmware.py)
    halt_ok: bool = False          # a final `cli; hlt` ends the run cleanly

    @property
    def machine_kind(self) -> str:
        """The soft engine's board: pc under native, hw, trap and bt; the
        1990 isa PC under pv (its guest has hypercalls, not an APIC):
        docs/platform.md."""
        if self.machine is not None:
            return self.machine
        return "pc" if self.technique in PC_TECHNIQUES else "isa"

    def machine_config(self) -> MachineConfig:
        """The machine's share: its RAM, minus what the technique's monitor keeps."""
        monitors.check_memory(self.technique, self.memory, self.engine)
        return MachineConfig(kernel=self.kernel, engine=self.engine, memory=self.memory,
                             cmdline=self.cmdline, modules=self.modules,
                             image_format=self.image_format, timeout=self.timeout,
                             reserved_top=monitors.reserved_top(self.technique, self.engine),
                             reserved_linear=monitors.reserved_linear(self.technique, self.engine),
                             bios=self.bios, halt_ok=self.halt_ok)


def create_engine(config: VmConfig, machine: Machine):
    """The engine the machine drives: KVM, the soft CPU, or a monitor that
    runs the guest deprivileged on the soft CPU and presents the same interface."""
    if config.engine == "kvm":
        return _kvm_engine(config, machine)
    if config.engine == "soft":
        cpu = _soft_cpus(config, machine)
        if config.technique == "hw":
            return monitors.create_hw(machine, cpu, config.paging)
        if config.technique in monitors.TECHNIQUES:
            return monitors.create(config.technique, machine, cpu, config.ring)
        return cpu
    raise ConfigError(f"unknown engine {config.engine!r} (available: kvm, soft)")


def _kvm_engine(config: VmConfig, machine: Machine):
    """KVM with `--cpus` vCPUs. With several, the vCPU threads share the
    devices through the machine's lock, and the guest finds its APs where a
    PC's firmware leaves them: the MP table and the ACPI MADT, with the
    interrupt routing they describe."""
    from ringvisor.kvm.engine import KvmEngine
    if config.cpus == 1:
        return KvmEngine(machine.memory, machine.ports, coalesced_sink=machine.on_coalesced)
    from ringvisor.boot import firmware_tables
    from ringvisor.boot.pc_description import PcDescription
    from ringvisor.machine.bus import SerialisedPorts
    lock = machine.device_lock

    def coalesced(*write):
        with lock:
            machine.on_coalesced(*write)
    engine = KvmEngine(machine.memory, SerialisedPorts(machine.ports, lock), coalesced, cpus=config.cpus)
    try:
        engine.route_isa_irqs_as_a_pc()
        signature, features = engine.cpuid_leaf1
        firmware_tables.install(machine.memory, PcDescription(cpus=config.cpus, cpu_signature=signature,
                                                              cpu_features=features))
    except BaseException:
        engine.close()
        raise
    return engine


def _soft_cpus(config: VmConfig, machine: Machine):
    """The soft platform and its CPUs (one per --cpus; each with its local
    APIC on the pc machine); returns the bootstrap processor."""
    from ringvisor.cpu import SoftEngine
    from ringvisor.machine.soft_platform import SoftPlatform
    pc = None
    if config.machine_kind == "pc":
        from ringvisor.boot.pc_description import PcDescription
        from ringvisor.cpu.semantics.system import CPUID_EDX, CPUID_SIGNATURE
        from ringvisor.devices.apic_defs import CPUID1_EDX_APIC
        # No TSC-deadline timer: this CPU has no SSE2, and the OSes that use
        # that mode fence the MSR write with MFENCE (Linux: __setup_APIC_LVTT).
        pc = PcDescription(cpus=config.cpus, cpu_signature=CPUID_SIGNATURE,
                           cpu_features=CPUID_EDX | CPUID1_EDX_APIC, tsc_deadline=False,
                           firmware_rom=config.bios is not None)
    elif config.cpus != 1:
        raise ConfigError(f"--cpus {config.cpus}: several CPUs need the pc machine (local APICs)")
    platform = machine.platform = SoftPlatform(
        machine.ports, ram_size=machine.memory.size, pc=pc, mmio=machine.mmio, memory=machine.memory,
        memory_map=machine.layout.memory_map(), cmdline=config.cmdline.encode())
    interrupts = platform.pic if pc is None else platform.pc.interrupts
    machine.pic = interrupts
    cpus = [SoftEngine(machine.memory, machine.ports, machine.mmio, interrupts=platform.pic)
            for _ in range(config.cpus)]
    if pc is not None:
        for cpu, apic in zip(cpus, platform.pc.lapics):
            cpu.attach_apic(apic)
    platform.engine = cpus[0]
    platform.set_cpus(cpus)
    return cpus[0]


def build_machine(config: VmConfig, console: Callable[[bytes], None]) -> Machine:
    """A machine with the guest loaded, ready to `run()`; `close()` it after."""
    return Machine(config.machine_config(), console, lambda machine: create_engine(config, machine))
