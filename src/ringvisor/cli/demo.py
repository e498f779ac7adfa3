"""`ringvisor demo`: the main job on the bundled guest, for a newcomer.

Each step is one `ringvisor run` (the command line is printed beside it):
the kvm engine boots a Multiboot test kernel and a ring-3 loop whose 2,000
port writes each exit to ringvisor; then the bundled guest OS (ringos) asks
its red-pill questions on bare (soft) hardware, where nothing is visible;
under trap-and-emulate, where the x86 holes show; under binary translation,
which closes them; and, built for hypercalls, under paravirtualization,
where the kernel knows. On PVM hosts ringos cannot run on the kvm engine
(PVM refuses 32-bit paging; README, Limits), so the kvm steps use the test
kernels.
`--linux` boots Debian's Linux instead (cli/demo_linux.py)."""
from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console

from ringvisor import guests
from ringvisor.cli import demo_linux, stats_view
from ringvisor.cli.run import run_guest
from ringvisor.errors import ConfigError
from ringvisor.kvm.backend import detect
from ringvisor.vm import VmConfig


@dataclass(frozen=True)
class Step:
    what: str
    command: str            # the equivalent command line, shown to the reader
    kernel: str             # a test kernel's name, or "ringos"
    engine: str
    technique: str
    cmdline: str
    stats: bool = False


STEPS = (
    Step("a Multiboot kernel boots on /dev/kvm and reports its boot information",
         "ringvisor run guests/tests/build/hello.elf --cmdline 'status=0 demo=1'",
         "hello", "kvm", "hw", "status=0 demo=1"),
    Step("2,000 port writes from ring 3: each one an exit to ringvisor",
         "ringvisor run guests/tests/build/portloop.elf --cmdline 'n=2000 ring=3 port=0x99' --stats",
         "portloop", "kvm", "hw", "n=2000 ring=3 port=0x99", stats=True),
    Step("the bundled guest OS on bare (soft) hardware: can its kernel tell it is virtualized?",
         "ringvisor run --engine soft --technique native --workload probe",
         "ringos", "soft", "native", "workload=probe"),
    Step("trap-and-emulate: the same kernel deprivileged to ring 1; POPF, SGDT, MOV from CS... "
         "do not trap, and give the game away",
         "ringvisor run --technique trap --workload probe",
         "ringos", "soft", "trap", "workload=probe"),
    Step("paravirtualization: ringos built for hypercalls knows it runs on a monitor",
         "ringvisor run --technique pv --workload probe",
         "ringos-pv", "soft", "pv", "workload=probe"),
    Step("binary translation: the kernel's code is rewritten as it runs, and the holes close",
         "ringvisor run --technique bt --workload probe",
         "ringos", "soft", "bt", "workload=probe"),
)


def command(args) -> int:
    if args.linux:
        return demo_linux.command(args)
    if args.technique:
        raise ConfigError("demo: --technique chooses the monitor of --linux; give --linux too")
    say = Console(stderr=True, highlight=False, soft_wrap=True)
    say.print("[bold]ringvisor demo[/]: virtualizing x86, step by step")
    say.print(f"this machine's /dev/kvm: {detect().description}\n")
    for step in STEPS:
        say.print(f"[bold]>>> {step.what}[/]\n    ({step.command})")
        kernel = guests.bundled(step.kernel) if step.kernel.startswith("ringos") else \
            guests.test_kernel(step.kernel)
        result = run_guest(VmConfig(kernel=kernel, engine=step.engine, technique=step.technique,
                                    cmdline=step.cmdline, timeout=120))
        if step.stats:
            stats_view.print_stats(result)
        if result.status:
            return result.status
        say.print()
    if demo_linux.fetched():
        say.print("Debian's Linux is fetched: `ringvisor demo --linux` boots it natively and under a "
                  "monitor (minutes each)")
    else:
        say.print(demo_linux.NOT_FETCHED)
    return 0
