"""`ringvisor compare`: every technique available here, one table."""
from __future__ import annotations

import sys

from rich.console import Console

from ringvisor.cli.paths import check_writable
from ringvisor.cli.report_console import report_console
from ringvisor.cli.run import write_doc
from ringvisor.compare import chart, linux_guest, report
from ringvisor.compare.techniques import ALL, refusal
from ringvisor.errors import ConfigError, GuestCrashed
from ringvisor.kvm.backend import detect


def command(args) -> int:
    linux = getattr(args, "guest", "ringos") == "linux"
    if args.iters is None:
        args.iters = 200 if linux else 1000
    if args.iters < 10 or args.rounds < 1:
        raise ConfigError("--iters must be at least 10 and --rounds at least 1")
    if linux and args.iters > linux_guest.MAX_ITERS:
        raise ConfigError(f"--iters {args.iters}: with --guest linux at most {linux_guest.MAX_ITERS} "
                          "(pgfault maps that many fresh pages in the guest's 64 MiB)")
    if args.chart:
        chart.check_path(args.chart)
        check_writable(args.chart, "--chart")
    if args.json:
        check_writable(args.json, "--json")
    chosen = ALL
    container = True
    if args.only:
        known = [t.name for t in ALL] + ["container"]
        wanted = args.only.split(",")
        container = "container" in wanted
        bad = [w for w in wanted if w not in known]
        if bad:
            raise ConfigError(f"unknown technique {bad[0]!r} (choose from {', '.join(known)})")
        chosen = tuple(t for t in ALL if t.name in wanted)
    say = Console(stderr=True, highlight=False)
    if linux:
        linux_guest.kernel_files()          # `make linux` first, in one line
        if args.only and container:
            raise ConfigError("the container column goes with the bundled guest: leave it out of "
                              "--only with --guest linux")
        refuse_if_nothing_can_run(chosen, linux_guest.refusal)
        with say.status("measuring") as status:
            def progress(what):
                say.print(f"compare --guest linux: {what}", soft_wrap=True)
                status.update(f"measuring {what}")
            doc = linux_guest.compare(chosen, args.iters, progress=progress)
    else:
        if not container:                       # the container column runs wherever Linux does
            refuse_if_nothing_can_run(chosen)
        with say.status("measuring") as status:
            doc = report.compare(chosen, args.iters, args.rounds,
                                 progress=lambda what: status.update(f"measuring {what}"),
                                 container=container)
    backend = detect()
    doc = {"backend": backend.name, "backend_description": backend.description,
           "iters": args.iters, **({} if linux else {"rounds": args.rounds}), **doc}
    if not doc["techniques"]:
        raise GuestCrashed("nothing was measured: " + "; ".join(
            f"{name}: {why}" for name, why in doc["unavailable"].items()))
    out = report_console(sys.stdout)
    out.print(report.table(doc))
    for line in report.notes(doc):
        out.print(line)
    if linux:
        out.print("linux: guests/linux/nanobench.c, a process of Debian's i386 kernel; host ns between "
                  "its two RDTSC reads per loop, traps (hw: VM exits) between them, kernel work "
                  "(timer ticks) included")
    if "container" in doc["techniques"]:
        out.print("container: a Linux process (guests/container/ctrbench) in a ringvisor-oci "
                  "container; its ratios are to the same program on the host, not to native")
    for name, why in doc["unavailable"].items():
        out.print(f"{name}: not measured: {why}")
    if args.json:
        write_doc(args.json, doc)
    if args.chart:
        chart.draw(doc, args.chart)
    return 0


def refuse_if_nothing_can_run(chosen, why=None) -> None:
    """When none of the chosen techniques can run here, say why at once
    (with the exit code of the first reason: 3 for an unusable /dev/kvm)."""
    why = why or refusal                    # looked up now: the tests replace it
    reasons = {t.name: why(t) for t in chosen}
    if all(reasons.values()):
        first = next(iter(reasons.values()))
        raise type(first)("nothing to measure here: " + "; ".join(
            f"{name}: {str(why).splitlines()[0]}" for name, why in reasons.items()))
