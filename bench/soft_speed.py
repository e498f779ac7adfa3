#!/usr/bin/env python3
"""The soft engine on real workloads: guest MIPS of ringos's workloads and
the time Debian's Linux kernel takes to its ready line, optionally against
another checkout of ringvisor (before/after a change), in one run.

Workloads (each run is a fresh process, the soft engine, technique native):
- compute, tasks: the bundled guest OS (`ringvisor run --workload W`);
  figure: instructions retired / Machine.run's wall time;
- linux: guests/linux/build/vmlinuz + initrd.cpio.gz (`make linux`) until
  the console shows `linux guest ready`; figures: seconds to that line and
  instructions retired by then (MIPS = their ratio).

`--machine isa|pc` picks the soft engine's machine (default: ringvisor's,
the pc machine). `--baseline DIR` runs the same workloads with DIR/src on the import path (a
second worktree or checkout, e.g. `git worktree add /tmp/base main`); runs of
the two trees alternate so machine load hits both alike. Figures are medians
of --runs runs, by wall time and by the process's CPU time; the ratio is this
tree's MIPS per CPU second over the baseline's (above 1: faster), CPU time
because on a shared machine the wall time mostly measures the other
processes. Last lines, one per workload:
    soft_speed <workload> mips=<wall> cpu_mips=<x> [seconds=.. cpu_seconds=..]
        [baseline_cpu_mips=<y> ratio=<x/y>]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, median, python

LINUX = ROOT / "guests" / "linux" / "build"
RINGOS = ROOT / "guests" / "os" / "build" / "ringos.elf"   # this tree's build serves both trees
READY = b"linux guest ready"
WORKLOADS = ("compute", "tasks", "linux")


# --- one measurement (in its own process) --------------------------------------------------
def child(workload: str, timeout: float, machine_kind: str | None = None) -> dict:
    from ringvisor.vm import VmConfig, build_machine
    if workload == "linux":
        config = VmConfig(kernel=str(LINUX / "vmlinuz"), engine="soft", technique="native",
                          modules=(str(LINUX / "initrd.cpio.gz"),), image_format="linux",
                          timeout=timeout, machine=machine_kind)
    else:
        config = VmConfig(kernel=str(RINGOS), engine="soft", technique="native",
                          cmdline=f"workload={workload}", timeout=timeout, machine=machine_kind)
    seen = bytearray()
    ready: dict = {}
    machine = None

    def console(data: bytes) -> None:
        seen.extend(data)
        if workload == "linux" and not ready and READY in seen[-len(data) - len(READY):]:
            ready.update(seconds=time.perf_counter() - start, cpu=time.process_time() - cpu_start,
                         instructions=machine.platform.engine.instructions)
            machine.request_quit()

    machine = build_machine(config, console)
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        result = machine.run()
    finally:
        machine.close()
    if workload == "linux":
        if not ready:
            raise SystemExit(f"linux: no ready line ({result.reason}); last output: "
                             f"{bytes(seen[-300:]).decode(errors='replace')!r}")
        return ready
    if result.status != 0:
        raise SystemExit(f"{workload}: the guest failed: {result.reason}")
    return {"seconds": result.wall_seconds, "cpu": time.process_time() - cpu_start,
            "instructions": result.stats["instructions"]}


def measure(tree: Path, workload: str, timeout: float, machine_kind: str | None = None) -> dict:
    env = {"PYTHONPATH": str(tree / "src")}
    extra = ["--machine", machine_kind] if machine_kind else []
    proc = subprocess.run([python(), __file__, "--child", workload, "--timeout", str(timeout), *extra],
                          stdin=subprocess.DEVNULL, capture_output=True, env=env,
                          timeout=timeout + 120)
    if proc.returncode != 0:
        raise SystemExit(f"{workload} on {tree} failed (exit {proc.returncode}):\n"
                         f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default="compute,tasks,linux",
                    help=f"comma-separated, from {', '.join(WORKLOADS)}")
    ap.add_argument("--runs", type=int, default=3, help="runs per workload and tree (median)")
    ap.add_argument("--baseline", type=Path, help="another ringvisor checkout to compare with")
    ap.add_argument("--timeout", type=float, default=1500.0, help="seconds per run")
    ap.add_argument("--machine", choices=("pc", "isa"),
                    help="the soft engine's machine (default: ringvisor's, the pc machine)")
    ap.add_argument("--child", choices=WORKLOADS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.timeout, args.machine)))
        return 0
    workloads = [w for w in args.workloads.split(",") if w]
    bad = [w for w in workloads if w not in WORKLOADS]
    if bad:
        raise SystemExit(f"unknown workload(s) {', '.join(bad)} (choose from {', '.join(WORKLOADS)})")
    if "linux" in workloads and not (LINUX / "vmlinuz").is_file():
        raise SystemExit("guests/linux/build/vmlinuz is missing: `make linux` fetches it")
    if args.baseline is not None and not (args.baseline / "src" / "ringvisor").is_dir():
        raise SystemExit(f"--baseline {args.baseline}: no src/ringvisor there")
    trees = [("this", ROOT)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    results: dict = {}
    for w in workloads:
        for i in range(args.runs):
            for name, tree in trees:
                r = measure(tree, w, args.timeout, args.machine)
                r["mips"] = r["instructions"] / r["seconds"] / 1e6
                r["cpu_mips"] = r["instructions"] / r["cpu"] / 1e6
                results.setdefault((name, w), []).append(r)
                print(f"  {w:8} {name:8} run {i + 1}: {r['instructions']:>12,} instructions "
                      f"in {r['seconds']:7.2f} s ({r['cpu']:7.2f} s CPU) = {r['mips']:6.2f} MIPS "
                      f"({r['cpu_mips']:6.2f} per CPU second)", flush=True)

    def med(name, w, key):
        return median([r[key] for r in results[(name, w)]])
    print()
    print(f"{'workload':10}{'tree':10}{'instructions':>14}{'seconds':>10}{'CPU s':>10}{'MIPS':>8}"
          f"{'CPU MIPS':>10}")
    for w in workloads:
        for name, _ in trees:
            print(f"{w:10}{name:10}{int(med(name, w, 'instructions')):>14,}{med(name, w, 'seconds'):>10.2f}"
                  f"{med(name, w, 'cpu'):>10.2f}{med(name, w, 'mips'):>8.2f}{med(name, w, 'cpu_mips'):>10.2f}")
    print()
    # The ratio is by CPU time: on a shared machine the wall time mostly
    # measures the other processes.
    for w in workloads:
        line = f"soft_speed {w} mips={med('this', w, 'mips'):.2f} cpu_mips={med('this', w, 'cpu_mips'):.2f}"
        if w == "linux":
            line += f" seconds={med('this', w, 'seconds'):.1f} cpu_seconds={med('this', w, 'cpu'):.1f}"
        if args.baseline:
            base = med("baseline", w, "cpu_mips")
            line += f" baseline_cpu_mips={base:.2f} ratio={med('this', w, 'cpu_mips') / base:.2f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
