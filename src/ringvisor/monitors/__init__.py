"""Monitors: the virtualization techniques that run the guest deprivileged
on an engine and own what the real CPU sees (DESIGN.md, "monitor" layer).

`create(technique, machine, engine, ring)` returns an object the machine
drives exactly like an engine. `RESERVED_BYTES` at the top of guest RAM
belong to the monitors (the machine's memory map hides them from the guest).
"""
from __future__ import annotations

from ringvisor.errors import ConfigError
from ringvisor.monitors.common.region import MIN_MEMORY, RESERVED_BYTES

TECHNIQUES = ("trap", "bt", "pv")


def reserved_top(technique: str, engine: str = "soft") -> int:
    """The bytes at the top of guest RAM a technique's monitor keeps
    (MachineConfig.reserved_top); none without a monitor (hw on kvm has none
    of ours: KVM is the monitor)."""
    if technique == "hw":
        return RESERVED_BYTES if engine == "soft" else 0
    return RESERVED_BYTES if technique in TECHNIQUES else 0


def reserved_linear(technique: str, engine: str = "soft") -> int:
    """The bytes at the top of the guest's linear address space a technique's
    monitor keeps: trap and bt map their region at 0xFFC00000 and cut every
    guest segment below it (pv's hole is part of its ABI; hw hides nothing)."""
    return RESERVED_BYTES if engine == "soft" and technique in ("trap", "bt") else 0


def check_memory(technique: str, ram_size: int, engine: str = "soft") -> None:
    """Bad input, said before anything is built: a monitor keeps the top of
    RAM, and the guest must keep at least as much below it."""
    if reserved_top(technique, engine) and ram_size < MIN_MEMORY:
        raise ConfigError(f"--technique {technique} needs at least {MIN_MEMORY >> 20} MiB of guest RAM "
                          f"(its monitor keeps the top {RESERVED_BYTES >> 20} MiB); got "
                          f"{ram_size / (1 << 20):g} MiB")


def create_hw(machine, engine, paging: str = "ept"):
    """The hw monitor on the soft engine: VMX non-root operation (cpu/vmx/)."""
    if paging not in ("ept", "shadow"):
        raise ConfigError("--paging is ept (nested paging) or shadow (shadow page tables)")
    _require_region(machine, "hw")
    from ringvisor.monitors.hw.monitor import HwMonitor
    bsp = HwMonitor(machine, engine, paging)
    platform = getattr(machine, "platform", None)
    for ap in (platform.cpus[1:] if platform is not None else ()):
        HwMonitor(machine, ap, paging, bsp=bsp)       # --cpus N: a vCPU per soft CPU
    return bsp


def _require_region(machine, monitor: str) -> None:
    if machine.layout.reserved_top != RESERVED_BYTES:
        raise ConfigError(f"the {monitor} monitor needs the top {RESERVED_BYTES >> 20} MiB of guest RAM "
                          f"reserved (MachineConfig.reserved_top={RESERVED_BYTES:#x})")


def create(technique: str, machine, engine, ring: int = 1):
    if technique == "trap":
        if ring not in (1, 3):
            raise ConfigError("--ring is 1 (the 0/1/3 model) or 3 (0/3/3, ring compression)")
        _require_region(machine, "trap")
        from ringvisor.monitors.trap.monitor import TrapMonitor
        return TrapMonitor(machine, engine, ring)
    if technique == "bt":
        if ring != 1:
            raise ConfigError("--technique bt runs the guest kernel in ring 1 (the 0/1/3 model) only")
        _require_region(machine, "bt")
        from ringvisor.monitors.bt.monitor import BtMonitor
        return BtMonitor(machine, engine)
    if technique == "pv":
        if machine.layout.reserved_top != RESERVED_BYTES or machine.platform is None:
            raise ConfigError(f"the PV monitor runs on the soft engine with the top "
                              f"{RESERVED_BYTES >> 20} MiB of guest RAM reserved "
                              f"(MachineConfig.reserved_top={RESERVED_BYTES:#x})")
        from ringvisor.monitors.pv.monitor import PvMonitor
        return PvMonitor(machine, engine)
    raise ConfigError(f"--technique {technique} is not implemented yet (monitors available: "
                      f"{', '.join(TECHNIQUES)})")


__all__ = ["MIN_MEMORY", "RESERVED_BYTES", "TECHNIQUES", "check_memory", "create", "create_hw", "reserved_linear",
           "reserved_top"]
