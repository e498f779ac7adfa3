"""`ringvisor compare --guest linux`: Adams & Agesen's nanobenchmarks as a
process of Debian's own i386 kernel sees them (guests/linux/nanobench.c,
run by the initramfs's /init when the command line says
`rdinit-nanobench=ITERS`), one boot per technique.

The program times each loop with RDTSC, which under compare reads the host
clock (SoftPlatform.host_clock_tsc) and logs every read with the monitor's
trap count. Linux reads the TSC itself all the time (its clocksource and
sched_clock), so the log is not two reads per loop as with ringos: the
program prints its two raw reads (tsc_begin, tsc_end) and they are looked
up in the log by value (each read returns host ns / NS_PER_INSTRUCTION,
strictly increasing: no two Python calls 10 ns apart)."""
from __future__ import annotations

import bisect
import re
import time

from ringvisor import guests
from ringvisor.compare.measure import add_ratios_to_native, traps_so_far
from ringvisor.compare.techniques import ALL, Technique, config_refusal
from ringvisor.errors import ConfigError, RingvisorError
from ringvisor.machine.soft_platform import NS_PER_INSTRUCTION

BUILD = "linux/build"
KERNEL, INITRD = "vmlinuz", "initrd.cpio.gz"
MEMORY = 64 << 20          # as tests/boot/test_linux_boot.py: pgfault maps 4 KiB per iteration
LINE = re.compile(r"^nanobench (\S+) iters=(\d+) cycles_per_iter=(\d+) tsc_begin=(\d+) tsc_end=(\d+)$")
SKIPPED = re.compile(r"^nanobench (\S+) skipped: (.*)$")
FAILED = re.compile(r"^nanobench exit status ([1-9]\d*)$")
NOT_FOR_LINUX = {"hw-shadow+pv": "enlighten=1 is ringos's paravirtual MMU hint; Debian's kernel does "
                                 "not take it"}
# CPU minutes for one boot, the nanobenchmarks (--iters 200) and the reset on
# this host's 2.6 GHz EPYC vCPUs: native, hw-ept, trap-ring1 and hw-shadow measured
# on 2026-12-06 (docs/compare.md; about 3.4, 3.3, 5.7 and 4.4 min), the others scaled by
# their boot times in `make test-linux`. The estimate printed before the first
# boot adds them up; on a shared host the wall time is longer by the load (32
# min for native at a load average of 13).
MINUTES = {"native": (3, 5), "hw-ept": (3, 5), "trap-ring1": (5, 8), "trap-ring3": (5, 8),
           "bt": (6, 10), "hw-shadow": (4, 6)}
MAX_ITERS = 8000           # pgfault maps ITERS fresh pages at once, in 64 MiB with the kernel


def kernel_files() -> tuple[str, str]:
    """(vmlinuz, initrd) of `make linux`, or one line saying to run it."""
    try:
        return guests.path(f"{BUILD}/{KERNEL}"), guests.path(f"{BUILD}/{INITRD}")
    except RingvisorError:
        raise ConfigError(f"{guests.ROOT / BUILD} has no Debian kernel and initramfs: run `make linux` "
                          "(it downloads them through apt and builds the Linux nanobench)") from None


def refusal(t: Technique) -> RingvisorError | None:
    """Why Debian's kernel cannot run under `t` here (None: it can), by the
    same checks `ringvisor run VMLINUZ --initrd FILE` makes."""
    if t.name in NOT_FOR_LINUX:
        return ConfigError(NOT_FOR_LINUX[t.name])
    kernel, initrd = kernel_files()
    return config_refusal(t, workload=None, guest=kernel, initrd=initrd)


def estimate(techniques) -> str:
    low = sum(MINUTES.get(t.name, (10, 25))[0] for t in techniques)
    high = sum(MINUTES.get(t.name, (10, 25))[1] for t in techniques)
    return (f"{len(techniques)} boot(s) of Debian's kernel ({', '.join(t.name for t in techniques)}): "
            f"about {low}-{high} minutes of CPU time, longer in wall time on a busy host")


class Boot:
    """One boot of Debian's kernel running the nanobenchmarks: its console
    lines and the RDTSC log (host ns, traps so far) of every read."""

    def __init__(self, t: Technique, iters: int, timeout: float = 5400, progress=None):
        from ringvisor.vm import VmConfig, build_machine
        kernel, initrd = kernel_files()
        config = VmConfig(kernel=kernel, engine=t.engine, technique=t.technique, ring=t.ring,
                          paging=t.paging or "ept", modules=(initrd,), image_format="linux",
                          cmdline=f"rdinit-nanobench={iters}", timeout=timeout, memory=MEMORY)
        out = bytearray()
        self._said: set[str] = set()
        self._progress = progress
        self._userland = False       # exits by reason are kept from /init on, not for the whole boot

        def console(data: bytes) -> None:
            out.extend(data)
            self._milestones(bytes(out[-200:]))
        machine = build_machine(config, console)
        start, cpu = time.monotonic(), time.process_time()
        try:
            by_reason = getattr(machine.engine, "exits_by_name", None)
            self.reasons: list[dict] = []

            def traps() -> int:
                if by_reason is not None:
                    self.reasons.append(by_reason() if self._userland else None)
                return traps_so_far(machine)
            self.tsc_log = machine.platform.host_clock_tsc(traps)
            result = machine.run()
        finally:
            self.seconds = time.monotonic() - start
            self.cpu_seconds = time.process_time() - cpu
            machine.close()
        self.lines = out.decode("latin-1").replace("\r", "").splitlines()
        if result.status != 0:
            raise RuntimeError(f"exit status {result.status} ({result.reason}): "
                               + " / ".join(self.lines[-3:]))

    def _milestones(self, tail: bytes) -> None:
        for mark, what in ((b"Linux version", "the kernel is starting"),
                           (b"linux guest ready", "the initramfs runs; nanobench next"),
                           (b"nanobench syscall", "nanobench running")):
            if mark in tail and what not in self._said:
                self._said.add(what)
                self._userland = self._userland or mark == b"linux guest ready"
                if self._progress:
                    self._progress(what)


def parse(lines: list[str], tsc_log: list[tuple[int, int]], reasons: list[dict] | None = None) -> dict:
    """compare's nanobench entries from the program's lines and the RDTSC
    log: host ns and traps (VM exits) per iteration between each loop's two
    reads, and the reads' guest cycles (host ns / NS_PER_INSTRUCTION)."""
    failed = [m[1] for m in map(FAILED.match, lines) if m]
    if failed:
        raise RuntimeError(f"nanobench exited with status {failed[0]}: "
                           + " / ".join(l for l in lines if l.startswith("nanobench:"))[:200])
    found = [m for m in map(LINE.match, lines) if m]
    if not found:
        raise RuntimeError("the guest printed no nanobench lines (an initramfs from before nanobench? "
                           "run `make linux`)")
    values = [ns // NS_PER_INSTRUCTION for ns, _ in tsc_log]
    out: dict[str, dict] = {}
    for m in found:
        name, iters, cycles, begin, end = m[1], int(m[2]), int(m[3]), int(m[4]), int(m[5])
        i, j = _read(values, begin, name), _read(values, end, name)
        (ns0, traps0), (ns1, traps1) = tsc_log[i], tsc_log[j]
        entry = {"ns_per_iter": (ns1 - ns0) / iters, "traps_per_iter": (traps1 - traps0) / iters,
                 "guest_cycles_per_iter": cycles}
        if reasons and reasons[i] is not None and reasons[j] is not None:
            before, after = reasons[i], reasons[j]
            entry["exits_per_iter_by_reason"] = {
                k: (n - before.get(k, 0)) / iters for k, n in after.items() if n != before.get(k, 0)}
        out[name] = entry
    return out


def skipped(lines: list[str]) -> dict[str, str]:
    return {m[1]: m[2] for m in map(SKIPPED.match, lines) if m}


def _read(values: list[int], value: int, name: str) -> int:
    k = bisect.bisect_left(values, value)
    if k == len(values) or values[k] != value:
        raise RuntimeError(f"nanobench {name}: its RDTSC value {value} is not in the log of the "
                           "guest's reads (RDTSC did not read the host clock?)")
    return k


def measure_technique(t: Technique, iters: int, progress=None) -> dict:
    boot = Boot(t, iters, progress=progress)
    entry = {"command": f"ringvisor run guests/linux/build/vmlinuz --initrd "
                        f"guests/linux/build/initrd.cpio.gz {t.command} --cmdline rdinit-nanobench={iters}",
             "boot_seconds": round(boot.seconds, 1), "boot_cpu_seconds": round(boot.cpu_seconds, 1),
             "nanobench": parse(boot.lines, boot.tsc_log, boot.reasons)}
    missing = skipped(boot.lines)
    if missing:
        entry["skipped"] = missing
    return entry


def compare(techniques=ALL, iters: int = 200, progress=None) -> dict:
    """compare's document for Debian's kernel: the same shape as ringos's,
    without compute MIPS and the probe (its techniques' entries have none)."""
    doc = {"guest": "linux", "techniques": {}, "unavailable": {}}
    runnable = []
    for t in techniques:
        why = refusal(t)
        if why:
            doc["unavailable"][t.name] = str(why).splitlines()[0]
        else:
            runnable.append(t)
    if progress and runnable:
        progress(estimate(runnable))
    for k, t in enumerate(runnable, 1):
        started = time.monotonic()

        def step(what, t=t, k=k, started=started):
            if progress:
                minutes = (time.monotonic() - started) / 60
                progress(f"{t.name} ({k} of {len(runnable)}, {minutes:.0f} min so far): {what}")
        step("booting Debian's kernel")
        try:
            doc["techniques"][t.name] = measure_technique(t, iters, step)
        except RingvisorError as e:
            doc["unavailable"][t.name] = str(e).splitlines()[0]
        except RuntimeError as e:
            doc["unavailable"][t.name] = f"the guest failed: {e}"
    add_ratios_to_native(doc)
    return doc
