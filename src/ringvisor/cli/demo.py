"""`ringvisor demo`: the bundled guest OS on the kvm engine, for a newcomer.

It runs the guest's red-pill probe (what a kernel can see of the hypervisor
under it), then shows where the exits went. The techniques that run on the
soft engine join as they land."""
from __future__ import annotations

from rich.console import Console

from ringvisor import guests
from ringvisor.cli import stats_view
from ringvisor.cli.consoles import open_console
from ringvisor.kvm.backend import detect
from ringvisor.machine.machine import Machine, MachineConfig


def command(args) -> int:
    console = Console(stderr=True, highlight=False)
    backend = detect()
    console.print("[bold]ringvisor demo[/]: the bundled guest OS (ringos) under hardware-assisted "
                  "virtualization (KVM)")
    console.print(f"this machine's /dev/kvm: {backend.description}\n")
    config = MachineConfig(kernel=guests.bundled(), engine="kvm", cmdline="workload=probe", timeout=120)
    with open_console("stdio") as out:
        machine = Machine(config, out.write)
        try:
            out.on_quit = machine.request_quit
            result = machine.run()
        finally:
            machine.close()
    console.print()
    stats_view.print_stats(result)
    return result.status
