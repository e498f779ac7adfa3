#!/usr/bin/env python3
"""Debian's Linux to its ready line: ringvisor's soft engine natively and
under the monitors, against QEMU TCG, in one run.

Every row boots guests/linux/build/vmlinuz with initrd.cpio.gz (`make
linux`) in a fresh process and stops at the console's `linux guest ready`
line (the initramfs's /init prints it once it has mounted /proc). Figures
per run: seconds from the process's start to that line, wall and CPU (the
CPU time is the process's own: on a shared machine the wall time mostly
measures the other processes), and guest instructions retired by then.

Rows (--techniques, comma-separated):
- native, bt, trap (ring 1), trap:3, hw:ept, hw:shadow: `ringvisor run
  --engine soft --technique T` as a Python process (this tree's src/);
  ringvisor loads the kernel's decompressed payload (boot/linux.py);
- qemu: Debian's `qemu-system-i386 -accel tcg -cpu pentium2 -m 64M` with
  the same kernel, initrd and the command line ringvisor gives its native
  pc machine. QEMU boots the bzImage as a PC does: SeaBIOS, the real-mode
  setup code and the kernel's own xz decompressor run as guest code first.
  Its instruction count comes from QEMU's insn plugin when the package
  ships it (libinsn.so; the count runs to the ready line plus the few
  instructions until QEMU sees SIGTERM); Debian 12's does not.

--profile samples each ringvisor process's stack (SIGPROF every 5 ms of
its CPU time) and charges each sample to what the innermost recognised
frame belongs to: compiled traces, trace compilation, the interpreter of
cold code, paging (TLB fills), the monitor (traps, emulation, shadow
paging, translation), devices and the platform, or the engine's loop.
Under bt and trap the monitor's own counters (--stats) give traps by kind
and the host microseconds per trap.

The kernel's first console line (its serial console coming on, about half
a second of guest time into the kernel) splits each boot: the CPU time
after it to the ready line is the same kernel work on both emulators,
without QEMU's firmware and decompressor and ringvisor's loading.

Figures are medians of --runs runs (`--techniques native=3,bt=1` sets a
row's own), in round-robin order over the rows, --jobs at once; ratios are by CPU time. Last lines,
one per row:
    linux_boot <row> seconds=<wall> cpu_seconds=<cpu> instructions=<n|n/a>
        [vs_native=<cpu ratio>] [vs_qemu=<cpu ratio>] [cpu_after_console=<s>]
        [vs_qemu_after_console=<cpu ratio>]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import ROOT, median, python

LINUX = ROOT / "guests" / "linux" / "build"
KERNEL, INITRD = LINUX / "vmlinuz", LINUX / "initrd.cpio.gz"
READY = b"linux guest ready"
MEMORY = 64 << 20
ROWS = ("native", "bt", "trap", "trap:3", "hw:ept", "hw:shadow", "qemu")
PROFILE_PERIOD = 0.005
ENTRY_OFFSET = 8             # bytecode offsets at a function's entry (RESUME and its preamble)

# --- the profile: which part of ringvisor a sampled stack belongs to --------------------------
# Walking from the innermost frame outwards, the first frame that matches a
# rule names the sample's category: a semantic handler called from a trace is
# compiled execution, the same handler called from the interpreter is
# interpretation, and from the monitor's emulator the monitor's.
MONITOR_CATEGORY = "monitor (traps, emulation, shadow paging, translation)"
CATEGORIES = (
    ("compiled traces", lambda f, fn: f in ("<trace>", "<flags>")),
    ("trace compilation", lambda f, fn: "/cpu/compiler/" in f and (
        f.endswith(("codegen.py", "trace.py", "structure.py", "lazyflags.py", "memcode.py"))
        or "/inline/" in f or fn in ("compile", "_code"))),
    ("interpreter (cold code)", lambda f, fn: f.endswith("/cpu/compiler/coldpath.py")
     or fn == "_interpret_one"),
    ("paging (TLB fills, page walks)", lambda f, fn: f.endswith(("/cpu/paging.py", "/vmx/ept.py"))),
    (MONITOR_CATEGORY, lambda f, fn: "/ringvisor/monitors/" in f),
    ("devices and platform", lambda f, fn: "/ringvisor/devices/" in f or "/ringvisor/machine/" in f),
    ("engine loop, interrupts, exits", lambda f, fn: f.endswith(("/cpu/engine.py", "/cpu/compiler/blocks.py"))
     or "/cpu/vmx/" in f),
    ("loading the kernel, start-up", lambda f, fn: "/ringvisor/boot/" in f or f.endswith("/ringvisor/vm.py")),
)
# Frames of the CPU's semantics, decoder and memory path match no rule: they
# are charged to whoever called them.


class Sampler:
    def __init__(self):
        self.samples: Counter = Counter()

    def _sample(self, _signum, frame) -> None:
        # CPython runs a signal handler at its next check: a function's entry
        # or a loop's back edge. A frame at its entry has just been called:
        # the time that ran up to the signal was its caller's (a compiled
        # trace has no calls and no back edges but for its loops, so without
        # this its time would go to whatever it calls next).
        if frame.f_lasti <= ENTRY_OFFSET and frame.f_back is not None:
            frame = frame.f_back
        while frame is not None:
            code = frame.f_code
            for name, match in CATEGORIES:
                if match(code.co_filename, code.co_name):
                    self.samples[name] += 1
                    return
            frame = frame.f_back
        self.samples["other (Python start-up, imports)"] += 1

    def start(self) -> None:
        signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, PROFILE_PERIOD, PROFILE_PERIOD)

    def stop(self) -> dict:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        return dict(self.samples)


# --- one ringvisor boot (in its own process) ---------------------------------------------------
def child(row: str, started: float, timeout: float, profile: bool, until: bytes = READY) -> dict:
    sampler = Sampler() if profile else None
    if sampler:
        sampler.start()
    from ringvisor.vm import VmConfig, build_machine
    technique, _, variant = row.partition(":")
    ring, paging = (int(variant or 1), "ept") if technique != "hw" else (1, variant or "ept")
    config = VmConfig(kernel=str(KERNEL), engine="soft", technique=technique, ring=ring, paging=paging,
                      modules=(str(INITRD),), image_format="linux", memory=MEMORY, timeout=timeout)
    seen = bytearray()
    ready: dict = {}
    first: dict = {}
    machine = None

    def console(data: bytes) -> None:
        if not seen:                # the kernel's serial console is on: its first line
            first.update(first_seconds=time.monotonic() - started, first_cpu=time.process_time())
        seen.extend(data)
        if not ready and until in seen[-len(data) - len(until):]:
            ready.update(seconds=time.monotonic() - started, cpu=time.process_time(),
                         run_seconds=time.perf_counter() - run_start,
                         instructions=machine.platform.engine.instructions)
            machine.request_quit()

    machine = build_machine(config, console)
    run_start = time.perf_counter()
    try:
        result = machine.run()
    finally:
        machine.close()
    if not ready:
        raise SystemExit(f"{row}: no {until.decode()!r} line ({result.reason}); last output: "
                         f"{bytes(seen[-300:]).decode(errors='replace')!r}")
    ready.update(first)
    if sampler:
        ready["profile"] = sampler.stop()
    ready["traces_compiled"] = _traces_compiled(machine)
    monitor = result.stats.get("monitor")
    if monitor:
        ready["monitor"] = {k: monitor[k] for k in ("traps", "traps_by_kind", "monitor_host_seconds",
                                                    "monitor_us_per_trap", "exits", "exits_by_reason")
                            if k in monitor}
    return ready


def _traces_compiled(machine) -> int | None:
    blocks = getattr(machine.platform.cpus[0], "blocks", None)
    return getattr(blocks, "compiled", None)


def ringvisor_run(row: str, timeout: float, profile: bool, until: bytes = READY) -> dict:
    cmd = [python(), __file__, "--child", row, "--started", repr(time.monotonic()),
           "--timeout", str(timeout), "--until", until.decode()] + (["--profile"] if profile else [])
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=timeout + 120)
    if proc.returncode != 0:
        raise SystemExit(f"{row} failed (exit {proc.returncode}):\n{proc.stderr.decode(errors='replace')[-2000:]}")
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


# --- QEMU TCG ----------------------------------------------------------------------------------
def qemu_command_line() -> str:
    """What ringvisor gives Linux on its native pc machine (APICs on, no reservetop)."""
    from ringvisor.boot import linux
    return linux.command_line("", 0, apic=True)


def insn_plugin() -> str | None:
    for d in ("/usr/lib/x86_64-linux-gnu/qemu", "/usr/lib/qemu", "/usr/libexec/qemu"):
        for sub in ("plugins", "."):
            p = Path(d) / sub / "libinsn.so"
            if p.is_file():
                return str(p)
    return None


def qemu_run(timeout: float, until: bytes = READY) -> dict:
    qemu = shutil.which("qemu-system-i386")
    if not qemu:
        raise SystemExit("qemu-system-i386 not found (apt-get install qemu-system-x86)")
    plugin = insn_plugin()
    cmd = [qemu, "-accel", "tcg", "-cpu", "pentium2", "-m", str(MEMORY >> 20), "-kernel", str(KERNEL),
           "-initrd", str(INITRD), "-append", qemu_command_line(), "-display", "none",
           "-serial", "stdio", "-monitor", "none", "-no-reboot", "-nodefaults"]
    if plugin:
        cmd += ["-plugin", plugin, "-d", "plugin"]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = bytearray()
    ready: dict = {}
    try:
        while "cpu" not in ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            now = time.monotonic() - start
            if not seen:
                ready.update(first_seconds=now, first_cpu=_cpu_seconds(proc.pid))
            seen.extend(chunk)
            if until in seen:
                ready.update(seconds=now, cpu=_cpu_seconds(proc.pid))
            if now > timeout:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    if "cpu" not in ready:
        raise SystemExit(f"qemu: no {until.decode()!r} line; last output: {bytes(seen[-300:]).decode(errors='replace')!r}\n"
                         f"{err.decode(errors='replace')[-1000:]}")
    m = re.search(rb"insns: (\d+)", err)
    ready["instructions"] = int(m.group(1)) if m else None
    return ready


def _cpu_seconds(pid: int) -> float:
    """A running process's user + system CPU time (proc(5): fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the report --------------------------------------------------------------------------------
def print_profile(row: str, runs: list[dict]) -> None:
    total = Counter()
    for r in runs:
        total.update(r.get("profile", {}))
    n = sum(total.values())
    if not n:
        return
    cpu = median([r["cpu"] for r in runs])
    print(f"\nprofile, {row} ({n:,} samples every {PROFILE_PERIOD * 1000:g} ms of CPU; "
          f"seconds scaled to the median {cpu:.1f} s)")
    for name, count in total.most_common():
        print(f"  {name:56}{100 * count / n:6.1f} %{cpu * count / n:9.1f} s")


def print_traps(row: str, runs: list[dict]) -> None:
    mon = runs[len(runs) // 2].get("monitor")
    if not mon:
        return
    if mon.get("traps"):
        # The monitor's own counter is wall time (perf_counter): on a loaded
        # machine it counts the other processes too. The profile's share of
        # CPU samples in the monitor gives its CPU time.
        run = runs[len(runs) // 2]
        samples = run.get("profile", {})
        share = samples.get(MONITOR_CATEGORY, 0) / sum(samples.values()) if samples else None
        us = 1e6 * share * run["cpu"] / mon["traps"] if share is not None else mon.get("monitor_us_per_trap", 0.0)
        source = "CPU (the profile's monitor share)" if share is not None else "wall time (the monitor's counter)"
        print(f"\nmonitor, {row}: {mon['traps']:,} traps; {mon.get('monitor_host_seconds', 0):.1f} s of wall "
              f"time in the monitor's handlers; {us:.0f} µs per trap, {source}")
        for kind, count in mon["traps_by_kind"].items():
            print(f"  {kind:32}{count:>12,}  ~{count * us / 1e6:7.1f} s at {us:.0f} µs per trap")
    if mon.get("exits"):
        print(f"\nmonitor, {row}: {mon['exits']:,} VM exits")
        for reason, count in mon.get("exits_by_reason", {}).items():
            print(f"  {reason:32}{count:>12,}")


def report(results: dict[str, list[dict]]) -> None:
    """The table of medians and ratios, the traps and profiles, and one
    machine-readable line per row (rows without runs are left out)."""
    rows = [row for row in results if results[row]]

    def med(row, key):
        values = [r[key] for r in results[row] if r.get(key) is not None]
        return median(values) if values else None

    for row in rows:                # CPU time from the kernel's first console line to the ready line
        for r in results[row]:
            if r.get("first_cpu") is not None:
                r["after_console_cpu"] = r["cpu"] - r["first_cpu"]

    ends = sorted({r.get("until", READY.decode()) for row in rows for r in results[row]})
    print(f"\nruns end at the console line {' / '.join(repr(e) for e in ends)}")
    print(f"{'row':11}{'runs':>5}{'seconds':>10}{'CPU s':>9}{'instructions':>15}{'CPU MIPS':>10}"
          f"{'vs native':>11}{'vs qemu':>9}{'CPU s after console':>21}{'vs qemu':>9}")
    lines = []
    for row in rows:
        cpu, ins, after = med(row, "cpu"), med(row, "instructions"), med(row, "after_console_cpu")
        q_after = med("qemu", "after_console_cpu") if "qemu" in rows else None
        vs_qemu_after = after / q_after if after is not None and q_after and row != "qemu" else None
        vs_native = cpu / med("native", "cpu") if "native" in rows and row not in ("native", "qemu") else None
        vs_qemu = cpu / med("qemu", "cpu") if "qemu" in rows and row != "qemu" else None
        fmt = lambda v, spec: format(v, spec) if v is not None else "-"
        print(f"{row:11}{len(results[row]):>5}{med(row, 'seconds'):>10.1f}{cpu:>9.1f}"
              f"{fmt(ins and int(ins), ',') :>15}{fmt(ins and ins / cpu / 1e6, '.2f'):>10}"
              f"{fmt(vs_native, '.2f'):>11}{fmt(vs_qemu, '.1f'):>9}{fmt(after, '.1f'):>21}"
              f"{fmt(vs_qemu_after, '.1f'):>9}")
        line = (f"linux_boot {row} seconds={med(row, 'seconds'):.1f} cpu_seconds={cpu:.1f} "
                f"instructions={int(ins) if ins else 'n/a'}")
        line += f" vs_native={vs_native:.2f}" if vs_native else ""
        line += f" vs_qemu={vs_qemu:.1f}" if vs_qemu else ""
        line += f" cpu_after_console={after:.1f}" if after is not None else ""
        line += f" vs_qemu_after_console={vs_qemu_after:.1f}" if vs_qemu_after else ""
        lines.append(line)
    for row in rows:
        if row != "qemu":
            print_traps(row, results[row])
            print_profile(row, results[row])
    print()
    for line in lines:
        print(line)


def load_runs(paths: list[str]) -> dict[str, list[dict]]:
    merged: dict[str, list[dict]] = {}
    for path in paths:
        try:
            runs = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"--report {path}: {e}")
        for row, rs in runs.items():
            merged.setdefault(row, []).extend(rs)
    return {row: merged[row] for row in ROWS if merged.get(row)}


def run_counts(spec: str, runs: int) -> dict[str, int]:
    """--techniques `native=3,bt=1,qemu`: each row and its number of runs
    (--runs where no `=N` is given)."""
    count = {}
    for word in (w for w in spec.split(",") if w):
        row, _, n = word.partition("=")
        if row not in ROWS:
            raise SystemExit(f"unknown technique {row!r} (choose from {', '.join(ROWS)})")
        if not (n or str(runs)).isdigit() or int(n or runs) < 1:
            raise SystemExit(f"{word}: the number of runs must be a positive integer")
        count[row] = int(n or runs)
    if not count:
        raise SystemExit("--techniques: no row given")
    return count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--techniques", default="native,bt,trap,qemu",
                    help=f"comma-separated rows, from {', '.join(ROWS)}, each optionally with =RUNS "
                    "(default native,bt,trap,qemu)")
    ap.add_argument("--runs", type=int, default=3, help="runs per row (median; default 3)")
    ap.add_argument("--timeout", type=float, default=14400.0, help="wall seconds per run (default "
                    "14400: a monitor's boot on a loaded 2-core machine takes over an hour)")
    ap.add_argument("--until", default=READY.decode(), metavar="TEXT", help="the console text that ends "
                    "a run (default 'linux guest ready'; e.g. 'printk: console [ttyS0] enabled' for the "
                    "early boot alone)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (default 1)")
    ap.add_argument("--profile", action="store_true", help="sample where ringvisor's time goes")
    ap.add_argument("--json", metavar="FILE", help="write every run's figures as JSON")
    ap.add_argument("--report", nargs="+", metavar="FILE", help="no runs: the report of runs saved "
                    "with --json (several files: their rows merged)")
    ap.add_argument("--child", choices=ROWS[:-1], help=argparse.SUPPRESS)
    ap.add_argument("--started", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.started or time.monotonic(), args.timeout, args.profile,
                               args.until.encode())))
        return 0
    if args.report:
        report(load_runs(args.report))
        return 0
    count = run_counts(args.techniques, args.runs)
    rows = list(count)
    until = args.until.encode()
    if not KERNEL.is_file() or not INITRD.is_file():
        raise SystemExit("guests/linux/build/vmlinuz or initrd.cpio.gz is missing: `make linux` fetches them")
    sys.path.insert(0, str(ROOT / "src"))
    if "qemu" in rows:
        print(f"qemu: {'insn plugin ' + insn_plugin() if insn_plugin() else 'no insn plugin: no count'}; "
              f"command line: {qemu_command_line()}")

    # Runs go round-robin over the rows (load hits each alike); --jobs N runs
    # N at once, which changes the wall times but hardly the CPU times.
    tasks = [(row, i) for i in range(max(count.values())) for row in rows if i < count[row]]
    results: dict[str, list[dict]] = {row: [] for row in rows}
    lock = threading.Lock()

    def one(task):
        row, i = task
        r = (qemu_run(args.timeout, until) if row == "qemu" else
             ringvisor_run(row, args.timeout, args.profile, until))
        r["until"] = until.decode()
        with lock:
            results[row].append(r)
            if args.json:           # after every run: a long bench stopped early keeps what it measured
                Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
        ins = f"{r['instructions']:,}" if r.get("instructions") else "n/a"
        extra = (f"; the first console line after {r['first_cpu']:.1f} s CPU"
                 if r.get("first_cpu") is not None else "")
        print(f"  {row:10} run {i + 1}: the line after {r['seconds']:7.1f} s ({r['cpu']:7.1f} s CPU), "
              f"{ins} instructions{extra}", flush=True)

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for future in [pool.submit(one, t) for t in tasks]:
            future.result()

    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
