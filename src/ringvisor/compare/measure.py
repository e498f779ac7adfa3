"""Running the bundled guest's workloads under one technique and reading
off what they cost on the host.

Nanobenchmarks are timed by the guest itself with RDTSC, as Adams & Agesen
did on real hardware. On the soft engine RDTSC then reads the host clock
(SoftPlatform.host_clock_tsc) and every read is logged with the monitor's
trap count, so the pair of reads around each benchmark loop gives its host
time and its traps exactly. On KVM, RDTSC is the host's TSC already
(KVM_GET_TSC_KHZ converts it); its exits cannot be attributed to one loop.
Compute MIPS: two runs of different length, differenced, so boot and
start-up costs cancel."""
from __future__ import annotations

import re
import time

from ringvisor import guests
from ringvisor.compare.techniques import Technique
from ringvisor.machine.machine import Machine
from ringvisor.vm import VmConfig, build_machine


def traps_so_far(machine: Machine) -> int:
    """Traps into the monitor (none on bare soft hardware)."""
    return getattr(machine.engine, "traps", 0)


class Run:
    """One boot of the bundled guest: its console lines, the host CPU time
    of the run, and (soft engine, host_tsc) the RDTSC log."""

    def __init__(self, t: Technique, cmdline: str, host_tsc: bool = False, timeout: float = 900):
        kernel = guests.bundled("ringos-pv" if t.technique == "pv" else "ringos")
        config = VmConfig(kernel=kernel, engine=t.engine, technique=t.technique, ring=t.ring,
                          cmdline=f"{cmdline} {t.cmdline}".strip(), timeout=timeout,
                          paging=t.paging or "ept")
        out = bytearray()
        machine = build_machine(config, out.extend)
        try:
            self.tsc_log = None
            self.tsc_khz = None
            self.reasons: list[dict] = []       # hw: exits by reason at each RDTSC
            by_reason = getattr(machine.engine, "exits_by_name", None)

            def traps() -> int:
                if by_reason is not None:
                    self.reasons.append(by_reason())
                return traps_so_far(machine)
            if host_tsc and machine.platform is not None:
                self.tsc_log = machine.platform.host_clock_tsc(traps)
            elif machine.platform is None:
                self.tsc_khz = machine.engine.vcpu.tsc_khz()
            cpu = time.process_time()
            result = machine.run()
            self.cpu_seconds = time.process_time() - cpu     # what other processes do not inflate
        finally:
            machine.close()
        self.lines = out.decode("latin-1").replace("\r", "").splitlines()
        if result.status != 0:
            raise RuntimeError(f"exit status {result.status}: " + " / ".join(self.lines[-3:]))

    def find(self, pattern: re.Pattern) -> list[re.Match]:
        return [m for m in map(pattern.match, self.lines) if m]


NANOBENCH = re.compile(r"^nanobench (\S+) iters=(\d+) cycles_per_iter=(\d+)$")
PV_NAMES = {"in-hypercall": "in", "cr-hypercall": "cr", "ptemod-hypercall": "ptemod"}


def nanobench(t: Technique, iters: int) -> dict[str, dict]:
    run = Run(t, f"workload=nanobench iters={iters}", host_tsc=True)
    found = run.find(NANOBENCH)
    if not found:
        raise RuntimeError("the guest printed no nanobench lines")
    out = {}
    for k, m in enumerate(found):
        cycles = int(m[3])
        if run.tsc_log is not None:
            if len(run.tsc_log) != 2 * len(found):
                raise RuntimeError(f"{len(run.tsc_log)} RDTSC reads for {len(found)} benchmarks")
            (ns0, traps0), (ns1, traps1) = run.tsc_log[2 * k], run.tsc_log[2 * k + 1]
            ns, traps = (ns1 - ns0) / iters, (traps1 - traps0) / iters
        else:
            ns, traps = cycles * 1e6 / run.tsc_khz, None
        entry = {"ns_per_iter": ns, "traps_per_iter": traps, "guest_cycles_per_iter": cycles}
        if run.reasons:
            before, after = run.reasons[2 * k], run.reasons[2 * k + 1]
            entry["exits_per_iter_by_reason"] = {
                name: (n - before.get(name, 0)) / iters for name, n in after.items()
                if n != before.get(name, 0)}
        out[PV_NAMES.get(m[1], m[1])] = entry
    return out


COMPUTE = re.compile(r"^compute checksum=([0-9a-f]+) instructions=(\d+)$")
# The longer run's extra CPU time must exceed this to be told from host noise;
# when it does not, the longer run is made 5 times longer again (LONGER).
MIN_EXTRA_SECONDS = 0.05
LONGER = (5, 25, 125)


def _compute_point(t: Technique, rounds: int) -> tuple[int, float, str]:
    run = Run(t, f"workload=compute iters={rounds}")
    found = run.find(COMPUTE)
    if not found:
        raise RuntimeError("the guest printed no checksum")
    return int(found[0][2]), run.cpu_seconds, found[0][1]


def compute_mips(t: Technique, rounds: int) -> tuple[float | None, str, str | None]:
    """Guest MIPS of the compute loop: its own exact instruction count over
    the host CPU time the extra rounds of a longer run took (boot, compiling
    and the first rounds cancel out). Returns (MIPS, checksum, None), or
    (None, checksum, why) when even the longest run's extra rounds took too
    little CPU time to be measured."""
    i0, s0, checksum = _compute_point(t, rounds)
    for factor in LONGER:
        i1, s1, checksum = _compute_point(t, factor * rounds)
        if s1 - s0 >= MIN_EXTRA_SECONDS:
            return (i1 - i0) / (s1 - s0) / 1e6, checksum, None
    return None, checksum, (f"{(factor - 1) * rounds} extra compute rounds took {max(s1 - s0, 0):.3f} s "
                            f"of CPU, under the {MIN_EXTRA_SECONDS} s that host noise allows to measure")


PROBE_VISIBLE = re.compile(r"^probe (\S+) .* VISIBLE$")
VERDICT = re.compile(r"^virtualization visible: (yes|no)$")


def probe(t: Technique) -> tuple[bool, list[str]]:
    run = Run(t, "workload=probe")
    verdict = run.find(VERDICT)
    if not verdict:
        raise RuntimeError("the probe gave no verdict")
    return verdict[0][1] == "yes", [m[1] for m in run.find(PROBE_VISIBLE)]


def add_ratios_to_native(doc: dict) -> None:
    """Each nanobenchmark's host time as a ratio to native's (None without native)."""
    native = doc["techniques"].get("native", {}).get("nanobench", {})
    for entry in doc["techniques"].values():
        for name, b in entry["nanobench"].items():
            base = native.get(name, {}).get("ns_per_iter")
            b["ratio_to_native"] = b["ns_per_iter"] / base if base else None
