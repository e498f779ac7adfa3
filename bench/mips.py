#!/usr/bin/env python3
"""Guest MIPS: the soft engine against Unicorn, QEMU TCG and the kvm engine, in one run.

One compute-bound 32-bit Multiboot guest (guests/tests/mips.elf: rounds of a
sieve of Eratosthenes and a CRC-32, in hand-written assembly that counts its
own instructions exactly) runs at CPL 0 and at CPL 3 (entered with SYSEXIT)
on every runner:
- soft: ringvisor's pure-Python IA-32 CPU (Machine, engine soft, technique native);
- unicorn: Unicorn (PyPI), QEMU's TCG as a library, the guest's ports served from Python;
- tcg: Debian's qemu-system-i386 -accel tcg, one process per run;
- kvm: ringvisor's kvm engine (Machine, technique hw).

Method, the same for every runner: each sample runs the guest with rounds=N
and rounds=4N and takes MIPS = (I_4N - I_N) / (t_4N - t_N), where I is the
instruction count the guest reports and t the host wall time of the run, so
boot, process start-up and translation warm-up cancel out. N is calibrated
per runner so that the difference takes about --seconds. Figures are medians
of --runs samples. Every run of every runner must report the same checksum
and instruction count for the same round count (checked as they come).

The last line is
    mips soft=<x> unicorn=<y> tcg=<z> kvm_cpl0=<a> kvm_cpl3=<b>
where soft, unicorn and tcg are the CPL-0 figures (the table has both CPLs),
and `n/a` stands for a runner that is unavailable here or failed.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from common import ROOT, ensure_built, median

sys.path.insert(0, str(ROOT / "src"))

from mips_runners import PAYLOAD, RUNNERS, RunFailed, Sample, Unavailable  # noqa: E402

ROWS = [("soft", 0), ("soft", 3), ("unicorn", 0), ("unicorn", 3),
        ("tcg", 0), ("tcg", 3), ("kvm", 0), ("kvm", 3)]
PILOT_SECONDS = 0.2          # calibration: a difference this long predicts the rest
MAX_ROUNDS = 10_000_000      # the guest's own loop counter stays within 32 bits


@dataclass
class Row:
    runner: str
    ring: int
    status: str = "ok"                     # ok, n/a, failed
    reason: str = ""
    rounds: int = 0                        # N (the long run is 4N)
    instructions: int = 0                  # I_4N - I_N, exact
    seconds: list[float] = field(default_factory=list)
    mips: list[float] = field(default_factory=list)
    emulated_share: float | None = None    # kvm: share of instructions the host kernel emulated


class Checker:
    """Every run must report what every other run reported for its round count."""

    def __init__(self):
        self.seen: dict[int, tuple[int, int, str]] = {}

    def __call__(self, rounds: int, sample: Sample, who: str) -> Sample:
        got = (sample.checksum, sample.instructions)
        ref = self.seen.setdefault(rounds, (*got, who))
        if got != ref[:2]:
            raise RunFailed(f"rounds={rounds}: checksum={got[0]:#010x} instructions={got[1]} "
                            f"but {ref[2]} reported checksum={ref[0]:#010x} instructions={ref[1]}")
        return sample


def calibrate(run, first: Sample, seconds: float) -> int:
    """N such that runs of N and 4N rounds differ by about `seconds`."""
    r, lo = 1, first
    while True:
        hi = run(4 * r)
        dt = hi.seconds - lo.seconds
        if dt >= PILOT_SECONDS or 4 * r >= MAX_ROUNDS:
            break
        r = min(MAX_ROUNDS // 4, int(r * (64 if dt <= 0 else min(64, max(2, 1.5 * PILOT_SECONDS / dt)))))
        lo = run(r)
    per_round = max(dt, 1e-9) / (3 * r)
    return max(1, min(MAX_ROUNDS // 4, round(seconds / (3 * per_round))))


def measure(row: Row, check: Checker, runs: int, seconds: float) -> None:
    who = f"{row.runner} CPL {row.ring}"

    def run(rounds: int) -> Sample:
        return check(rounds, RUNNERS[row.runner](rounds, row.ring), who)

    try:
        n = row.rounds = calibrate(run, run(1), seconds)
        shares = []
        for _ in range(runs):
            a, b = run(n), run(4 * n)
            di, dt = b.instructions - a.instructions, b.seconds - a.seconds
            if dt <= 0:
                raise RunFailed(f"rounds={4 * n} ran no longer than rounds={n}: "
                                "the host is too noisy for --seconds this short")
            row.instructions = di
            row.seconds.append(dt)
            row.mips.append(di / dt / 1e6)
            if a.host_emulated is not None:
                shares.append((b.host_emulated - a.host_emulated) / di)
        row.emulated_share = median(shares) if shares else None
    except Unavailable as e:
        row.status, row.reason = "n/a", str(e)
    except RunFailed as e:
        row.status, row.reason = "failed", str(e)


def figure(rows: list[Row], runner: str, ring: int) -> float | None:
    for r in rows:
        if r.runner == runner and r.ring == ring and r.status == "ok":
            return median(r.mips)
    return None


def last_line(rows: list[Row]) -> str:
    def fmt(runner: str, ring: int) -> str:
        v = figure(rows, runner, ring)
        return "n/a" if v is None else f"{v:.2f}"
    return (f"mips soft={fmt('soft', 0)} unicorn={fmt('unicorn', 0)} tcg={fmt('tcg', 0)} "
            f"kvm_cpl0={fmt('kvm', 0)} kvm_cpl3={fmt('kvm', 3)}")


def print_table(rows: list[Row], runs: int) -> None:
    from rich.console import Console
    from rich.table import Table
    t = Table(title=f"guest MIPS, medians of {runs} samples (differential: rounds 4N minus N)")
    for col in ("runner", "CPL", "N", "guest instructions", "seconds", "MIPS", "min–max", "× soft", "note"):
        t.add_column(col, justify="left" if col in ("runner", "note") else "right")
    for r in rows:
        if r.status != "ok":
            t.add_row(r.runner, str(r.ring), "", "", "", r.status, "", "", r.reason)
            continue
        mips = median(r.mips)
        soft = figure(rows, "soft", r.ring)
        note = "" if r.emulated_share is None else \
            f"{r.emulated_share:.0%} of instructions emulated by the host kernel"
        t.add_row(r.runner, str(r.ring), f"{r.rounds:,}", f"{r.instructions:,}", f"{median(r.seconds):.2f}",
                  f"{mips:,.2f}", f"{min(r.mips):,.2f}–{max(r.mips):,.2f}",
                  f"{mips / soft:,.1f}" if soft else "", note)
    Console(width=160).print(t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="samples per runner and CPL (median)")
    ap.add_argument("--seconds", type=float, default=1.5, help="target length of t_4N - t_N")
    ap.add_argument("--runners", default=",".join(RUNNERS),
                    help=f"comma-separated subset of {','.join(RUNNERS)}")
    args = ap.parse_args()
    wanted = [w.strip() for w in args.runners.split(",") if w.strip()]
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if not args.seconds > 0:
        ap.error("--seconds must be positive")
    if not wanted or any(w not in RUNNERS for w in wanted):
        ap.error(f"--runners takes names from {','.join(RUNNERS)}")
    ensure_built(PAYLOAD)
    from ringvisor.kvm.backend import detect
    print(f"kvm backend: {detect().description}")
    print(f"payload: {PAYLOAD.name} (sieve + CRC-32, self-counting); "
          f"MIPS = (I_4N - I_N) / (t_4N - t_N), start-up cancels; medians of {args.runs}")
    check = Checker()
    rows = []
    for runner, ring in ROWS:
        if runner not in wanted:
            continue
        row = Row(runner, ring)
        measure(row, check, args.runs, args.seconds)
        rows.append(row)
        what = f"{median(row.mips):,.2f} MIPS (N={row.rounds:,})" if row.status == "ok" else \
            f"{row.status}: {row.reason}"
        print(f"{runner} CPL {ring}: {what}", flush=True)
    print_table(rows, args.runs)

    print(last_line(rows))
    return 1 if any(r.status == "failed" for r in rows) else 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        raise SystemExit(130) from None
