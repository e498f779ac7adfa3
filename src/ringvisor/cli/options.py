"""Turning `ringvisor run` options into a machine configuration, with one-line
errors for everything the user can get wrong."""
from __future__ import annotations

from ringvisor import guests
from ringvisor.errors import ConfigError, KvmUnavailable
from ringvisor.machine.memory import check_size, parse_size
from ringvisor.vm import VmConfig

WORKLOADS = ("compute", "tasks", "nanobench", "probe")
SOFT_TECHNIQUES = ("trap", "bt", "pv")
# The monitors (trap, bt, pv) run on the soft engine; ringvisor.monitors.create
# says in one line which of them this build has.
AVAILABLE = {("kvm", "hw"), ("kvm", "native"), ("soft", "native"), ("soft", "hw"),
             ("soft", "trap"), ("soft", "bt"), ("soft", "pv")}


def engine_for(technique: str, engine: str | None, own_guest: bool = False) -> str:
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


def vm_config(args) -> VmConfig:
    engine = engine_for(args.technique, args.engine, bool(args.guest))
    if (engine, args.technique) not in AVAILABLE:
        raise ConfigError(f"--technique {args.technique} on the {engine} engine is not available yet "
                          f"(this build offers: {', '.join(f'{t} on {e}' for e, t in sorted(AVAILABLE))})")
    if args.timeout is not None and args.timeout <= 0:
        raise ConfigError("--timeout must be a positive number of seconds")
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
    if args.ring != 1 and args.technique != "trap":
        raise ConfigError("--ring applies to --technique trap only")
    paging = getattr(args, "paging", None)
    if paging and (args.technique, engine) != ("hw", "soft"):
        raise ConfigError("--paging applies to --technique hw on the soft engine only")
    kernel = args.guest or guests.bundled("ringos-pv" if args.technique == "pv" else "ringos")
    if engine == "kvm" and not args.guest:
        refuse_paging_guest_on_pvm(args.technique)
    return VmConfig(kernel=kernel, engine=engine, technique=args.technique, ring=args.ring,
                    memory=check_size(parse_size(args.memory)), cmdline=cmdline,
                    modules=tuple(args.module), image_format=args.format, timeout=args.timeout,
                    paging=paging or "ept")


def refuse_paging_guest_on_pvm(technique: str = "native") -> None:
    """The bundled guest enables 32-bit paging, which PVM (a KVM without
    VT-x/AMD-V) answers with #GP: say so before the guest panics."""
    from ringvisor.kvm.backend import detect
    if detect().name == "PVM":
        raise KvmUnavailable("the bundled guest OS needs 32-bit paging, which this host's /dev/kvm "
                             "(PVM, kvm_pvm) refuses; run it on the soft engine: "
                             "--engine soft --technique native"
                             + (", or --engine soft for hw on the soft CPU's VMX"
                                if technique == "hw" else ""))
