"""Turning `ringvisor run` options into a machine configuration, with one-line
errors for everything the user can get wrong."""
from __future__ import annotations

import math

from ringvisor import guests
from ringvisor.boot.pc_description import MAX_CPUS
from ringvisor.errors import ConfigError, KvmUnavailable
from ringvisor.machine.memory import check_size, parse_size
from ringvisor.vm import VmConfig

WORKLOADS = ("compute", "tasks", "nanobench", "probe")
SOFT_TECHNIQUES = ("trap", "bt", "pv")
# The monitors (trap, bt, pv) run on the soft engine; ringvisor.monitors.create
# says in one line which of them this build has.
AVAILABLE = {("kvm", "hw"), ("kvm", "native"), ("soft", "native"), ("soft", "hw"),
             ("soft", "trap"), ("soft", "bt"), ("soft", "pv")}


def engine_for(technique: str, engine: str | None) -> str:
    if technique == "hw":
        if engine:
            return engine
        # The kvm engine where it can run the guest (vm_config refuses the
        # bundled guest on PVM); else the soft CPU's VMX, on request.
        import os
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            raise KvmUnavailable("--technique hw: /dev/kvm is not usable here; the soft CPU has "
                                 "hardware-assisted virtualization too: add --engine soft")
        return "kvm"
    if engine:
        return engine
    return "soft" if technique in SOFT_TECHNIQUES or technique == "native" else "kvm"


def default_technique(engine: str | None) -> str:
    """The soft engine's bare hardware is `native`; everywhere else the
    default is hardware-assisted."""
    return "native" if engine == "soft" else "hw"


def vm_config(args) -> VmConfig:
    bios = getattr(args, "bios", None)
    if bios is not None:
        check_bios_options(args)
    technique = args.technique or ("native" if bios else default_technique(args.engine))
    engine = engine_for(technique, args.engine or ("soft" if bios else None))
    if (engine, technique) not in AVAILABLE:
        raise ConfigError(f"--technique {technique} on the {engine} engine is not available yet "
                          f"(this build offers: {', '.join(f'{t} on {e}' for e, t in sorted(AVAILABLE))})")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise ConfigError(f"--timeout {args.timeout:g}: must be a positive number of seconds")
    cmdline = args.cmdline
    if args.workload:
        if args.workload not in WORKLOADS:
            raise ConfigError(f"unknown workload {args.workload!r} (choose from {', '.join(WORKLOADS)})")
        if args.guest:
            raise ConfigError("--workload selects a workload of the bundled guest; with your own GUEST "
                              "use --cmdline")
        cmdline = f"workload={args.workload} {cmdline}".strip()
    if args.ring not in (1, 3):
        raise ConfigError("--ring is 1 (the 0/1/3 model) or 3 (0/3/3, ring compression)")
    if args.ring != 1 and technique != "trap":
        raise ConfigError("--ring applies to --technique trap only")
    paging = getattr(args, "paging", None)
    if paging and (technique, engine) != ("hw", "soft"):
        raise ConfigError("--paging applies to --technique hw on the soft engine only")
    if getattr(args, "halt_ok", False) and engine == "soft" and technique != "native":
        raise ConfigError(f"--halt-ok applies to guests on bare hardware (--technique native, or hw on "
                          f"the kvm engine); the {technique} monitor reports a guest's cli; hlt itself")
    machine, cpus = machine_options(args, engine, technique)
    modules, image_format = linux_boot_options(args)
    if image_format == "linux" and technique == "pv":
        raise ConfigError("a stock Linux kernel is not written for ringvisor's PV ABI: run it with "
                          "--technique native, trap or bt")
    kernel = "" if bios else args.guest or guests.bundled("ringos-pv" if technique == "pv" else "ringos")
    if engine == "kvm" and not args.guest and not bios:
        refuse_paging_guest_on_pvm(technique=technique)
    if engine == "kvm" and image_format == "linux":
        refuse_paging_guest_on_pvm("a 32-bit Linux kernel", technique)
    return VmConfig(kernel=kernel, engine=engine, technique=technique, ring=args.ring,
                    memory=check_size(parse_size(args.memory)), cmdline=cmdline,
                    modules=modules, image_format=image_format, timeout=args.timeout,
                    paging=paging or "ept", machine=machine, cpus=cpus, bios=bios,
                    halt_ok=getattr(args, "halt_ok", False))


def check_bios_options(args) -> None:
    """--bios ROM replaces the kernel: the firmware starts at the reset vector
    on the soft CPU's bare hardware (boot/firmware.py)."""
    clash = [name for name, given in (
        ("a GUEST kernel", args.guest), ("--initrd", getattr(args, "initrd", None)),
        ("--module", args.module), ("--cmdline", args.cmdline), ("--workload", args.workload),
        (f"--format {args.format}", args.format != "auto")) if given]
    if clash:
        raise ConfigError(f"--bios starts a firmware ROM instead of a kernel: drop {clash[0]}")
    if args.engine == "kvm":
        raise ConfigError("--bios runs on the soft engine (the kvm engine has no firmware ROM "
                          "mapping here): use --engine soft")
    if args.technique not in (None, "native"):
        raise ConfigError(f"--bios runs the firmware on bare hardware (--technique native); the "
                          f"{args.technique} monitor boots kernels, not firmware")


def machine_options(args, engine: str, technique: str) -> tuple[str | None, int]:
    """(--machine, --cpus), refused in one line where they cannot apply."""
    machine, cpus = getattr(args, "machine", None), getattr(args, "cpus", 1)
    if cpus < 1:
        raise ConfigError(f"--cpus {cpus}: a machine has at least one CPU")
    if engine == "kvm":
        if machine:
            raise ConfigError("--machine applies to the soft engine (KVM's in-kernel irqchip is the kvm "
                              "engine's machine)")
        if cpus > MAX_CPUS:
            raise ConfigError(f"--cpus {cpus}: an xAPIC machine has 1 to {MAX_CPUS} CPUs")
        if cpus > 1 and (getattr(args, "gdb", None) or getattr(args, "gdb_wait", False)):
            raise ConfigError(f"--cpus {cpus}: --gdb on the kvm engine debugs one vCPU (the other "
                              "vCPUs' threads would run on unseen): drop --cpus or use --engine soft")
        return None, cpus   # the host's own limit (KVM_CAP_MAX_VCPUS): kvm/engine.py
    if machine == "pc" and technique == "pv":
        raise ConfigError("--machine pc: the pv guest takes its timer and events through hypercalls, "
                          "not an APIC; it runs on the isa machine")
    if technique not in ("native", "hw"):
        if cpus > 1:
            raise ConfigError(f"--cpus {cpus}: the {technique} monitor runs one vCPU (its virtual CPU, "
                              "shadow page tables and traps are per guest, not per vCPU); several CPUs "
                              "run under --technique native or hw")
    if cpus > 1 and machine == "isa":
        raise ConfigError(f"--cpus {cpus}: several CPUs need local APICs: use the pc machine")
    return machine, cpus


def linux_boot_options(args) -> tuple[tuple[str, ...], str]:
    """(modules, image format): --initrd is a Linux kernel's one module, and
    says the guest is Linux (boot/linux.py)."""
    initrd = getattr(args, "initrd", None)
    if initrd is None:
        return tuple(args.module), args.format
    if not args.guest:
        raise ConfigError("--initrd goes with a Linux kernel: ringvisor run VMLINUZ --initrd FILE")
    if args.module:
        raise ConfigError("--module is for Multiboot kernels; a Linux kernel takes one --initrd")
    if args.format not in ("auto", "linux"):
        raise ConfigError(f"--initrd is for Linux kernels, not --format {args.format}")
    return (initrd,), "linux"


def refuse_paging_guest_on_pvm(guest: str = "the bundled guest OS", technique: str = "native") -> None:
    """The bundled guest (and a 32-bit Linux) enables 32-bit paging, which
    PVM (a KVM without VT-x/AMD-V) answers with #GP: say so before the guest panics."""
    from ringvisor.kvm.backend import detect
    if detect().name == "PVM":
        raise KvmUnavailable(f"{guest} needs 32-bit paging, which this host's /dev/kvm "
                             "(PVM, kvm_pvm) refuses; run it on the soft engine: "
                             "--engine soft --technique native"
                             + (", or --engine soft for hw on the soft CPU's VMX"
                                if technique == "hw" else ""))
