"""`ringvisor demo`: what the kvm engine does today, for a newcomer.

A test kernel boots through Multiboot and prints what it was told; then a
ring-3 loop makes 2,000 port exits and the table shows where each one went.
The bundled guest OS (ringos) joins when it runs on this backend: it turns on
32-bit paging, which PVM hosts refuse (README, Limits)."""
from __future__ import annotations

from rich.console import Console

from ringvisor import guests
from ringvisor.cli import stats_view
from ringvisor.cli.run import run_guest
from ringvisor.kvm.backend import detect
from ringvisor.machine.machine import MachineConfig

STEPS = (("hello", "status=0 demo=1", "a Multiboot kernel boots and reports its boot information"),
         ("portloop", "n=2000 ring=3 port=0x99", "2,000 port writes from ring 3: each one an exit to ringvisor"))


def command(args) -> int:
    say = Console(stderr=True, highlight=False)
    say.print("[bold]ringvisor demo[/]: hardware-assisted virtualization through /dev/kvm")
    say.print(f"this machine's /dev/kvm: {detect().description}\n")
    for kernel, cmdline, what in STEPS:
        say.print(f"[bold]>>> {what}[/]  (ringvisor run {kernel}.elf --cmdline '{cmdline}' --stats)")
        result = run_guest(MachineConfig(kernel=guests.test_kernel(kernel), engine="kvm",
                                         cmdline=cmdline, timeout=60))
        if kernel == "portloop":
            stats_view.print_stats(result)
        if result.status:
            return result.status
        say.print()
    return 0
