"""`ringvisor`: the command line (DESIGN.md holds its contract)."""
from __future__ import annotations

import argparse
import sys

from ringvisor import __version__
from ringvisor.errors import RingvisorError

TECHNIQUES = ("native", "hw", "trap", "bt", "pv")
ENGINES = ("kvm", "soft")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ringvisor", description="A hypervisor in Python: every classic "
                                "way of virtualizing x86, on real guests, measured.")
    p.add_argument("--version", action="version", version=f"ringvisor {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a guest")
    run.add_argument("guest", nargs="?", help="kernel: a Multiboot ELF, a Linux bzImage or vmlinux, "
                     "or a flat binary (*.bin); default: the bundled guest OS")
    run.add_argument("--engine", choices=ENGINES, help="what executes the guest (default: kvm for hw, "
                     "soft for native, trap, bt and pv)")
    run.add_argument("--technique", choices=TECHNIQUES, help="virtualization technique (default: "
                     "native with --engine soft, otherwise hw)")
    run.add_argument("--ring", type=int, choices=(1, 3), default=1, help="trap: ring the guest kernel runs in")
    run.add_argument("--paging", choices=("ept", "shadow"), help="hw on the soft engine: nested paging "
                     "(ept, the default) or shadow page tables (first-generation VT-x)")
    run.add_argument("--workload", help="bundled guest workload (compute, tasks, nanobench, probe)")
    run.add_argument("--cmdline", default="", help="kernel command line. For Linux it extends "
                     "ringvisor's defaults (console=ttyS0 and 'off' for the devices not modelled: "
                     "acpi=off pci=off noapic nolapic ...): a parameter you give replaces the default "
                     "of the same name, and the word 'nodefaults' drops them all; 'rdinit-shell' asks "
                     "guests/linux's initramfs for an interactive shell")
    run.add_argument("--initrd", metavar="FILE", help="Linux: the initial RAM disk (a cpio archive, "
                     "optionally compressed), placed as high in RAM as the kernel allows")
    run.add_argument("--module", action="append", default=[], metavar="'FILE ARGS'",
                     help="a Multiboot module (repeatable)")
    run.add_argument("--format", choices=("auto", "multiboot", "linux", "flat", "flat16"), default="auto",
                     help="guest image format (default: detect)")
    run.add_argument("--bios", metavar="ROM", help="soft engine: start a firmware ROM (e.g. Debian's "
                     "SeaBIOS, /usr/share/seabios/bios.bin) at the reset vector instead of a kernel")
    run.add_argument("--halt-ok", action="store_true", help="a guest that ends in cli; hlt stops with "
                     "status 0 (firmware after its POST, a test ROM) instead of being reported as a crash")
    run.add_argument("--memory", "-m", default="128M", help="guest RAM (default 128M, as QEMU's pc machine)")
    run.add_argument("--cpus", type=int, default=1, metavar="N", help="N CPUs (default 1): on the "
                     "soft engine (native, pc machine) interleaved in deterministic quanta; on the kvm "
                     "engine a host thread per vCPU, APs started by the guest's INIT-SIPI-SIPI")
    run.add_argument("--machine", choices=("pc", "isa"), help="soft engine: pc (local and I/O "
                     "APICs, ACPI and MP tables, fw_cfg; the default under native) or isa (the 1990 PC: "
                     "8259, 8254, 16550; the default under the monitors)")
    run.add_argument("--timeout", type=float, help="stop the guest after this many seconds")
    run.add_argument("--serial", default="stdio", help="where the console goes: stdio or file:PATH")
    run.add_argument("--debugcon", metavar="stdio|file:PATH", help="where the debug console "
                     "(port 0xE9; with --bios also 0x402, SeaBIOS's log) goes (default: with the serial console)")
    run.add_argument("--stats", action="store_true", help="print exit statistics after the run")
    run.add_argument("--json", metavar="FILE", help="write the run's statistics as JSON")
    run.add_argument("--trace", metavar="FILE", help="one line per exit and monitor trap, with the "
                     "guest instruction and what the monitor did ('-' for stderr)")
    run.add_argument("--trace-limit", type=int, default=10_000, metavar="N",
                     help="stop tracing after N lines (default 10000)")
    run.add_argument("--gdb", nargs="?", const="127.0.0.1:1234", metavar="[HOST:]PORT",
                     help="serve gdb's remote protocol there (default 127.0.0.1:1234, loopback "
                     "only: whoever connects controls the guest); as QEMU's -s")
    run.add_argument("--gdb-wait", action="store_true", help="stop before the first guest "
                     "instruction until gdb connects (implies --gdb); as QEMU's -S")
    run.set_defaults(handler="ringvisor.cli.run:command")

    compare = sub.add_parser("compare", help="the bundled guest under every technique available here, "
                             "one table (Adams & Agesen's nanobenchmarks, red pill, MIPS)")
    compare.add_argument("--json", metavar="FILE", help="write the comparison as JSON")
    compare.add_argument("--chart", metavar="FILE", help="draw each nanobenchmark's host ns per "
                         "iteration and traps per iteration, per technique (.png or .svg)")
    compare.add_argument("--guest", choices=("ringos", "linux"), default="ringos",
                         help="ringos (the bundled guest, default) or linux: Debian's kernel from "
                         "`make linux`, its nanobenchmarks run as a process, one boot (minutes) per "
                         "technique; no compute MIPS, no probe")
    compare.add_argument("--iters", type=int, default=None,
                         help="nanobenchmark iterations (default 1000; 200 with --guest linux)")
    compare.add_argument("--rounds", type=int, default=4, help="compute rounds of the shorter of the two runs whose difference gives MIPS (the longer runs 5x as many, or 25x or 125x when that is too short to time; default 4)")
    compare.add_argument("--only", metavar="NAMES", help="comma-separated techniques "
                         "(native, trap-ring1, trap-ring3, bt, pv, hw-shadow, hw-shadow+pv, hw-ept, "
                         "hw, container)")
    compare.set_defaults(handler="ringvisor.cli.compare:command")

    demo = sub.add_parser("demo", help="the main job on the bundled guest, for a newcomer")
    demo.add_argument("--linux", action="store_true", help="instead: Debian's Linux kernel (`make "
                      "linux`) booted natively and under one monitor, minutes each")
    demo.add_argument("--technique", choices=("bt", "trap", "hw"),
                      help="--linux: the monitor to compare with native (default bt)")
    demo.set_defaults(handler="ringvisor.cli.demo:command")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    module, _, func = args.handler.partition(":")
    try:
        import importlib
        return getattr(importlib.import_module(module), func)(args)
    except RingvisorError as e:
        print(f"ringvisor: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("ringvisor: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
