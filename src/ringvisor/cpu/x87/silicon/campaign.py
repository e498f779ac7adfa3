"""A difftest campaign: hypothesis draws batches of cases, the host's FPU and
the soft FPU run them, divergences are kept and grouped by instruction.

    python -m ringvisor.cpu.x87.silicon [--examples N] [--seed S] [--insns K]

exits 1 when any case diverged (each printed with a replay expression)."""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringvisor.cpu.x87.silicon.cases import cases
from ringvisor.cpu.x87.silicon.diff import describe, differences, replay_source
from ringvisor.cpu.x87.silicon.runner import (HarnessUnavailable, build_harness, run_silicon,
                                              run_soft)

BATCH = 20


def check_batch(batch, harness=None):
    """[(case, differences)] for the cases of a batch that diverge."""
    hw = run_silicon(batch, harness)
    bad = []
    for case, silicon in zip(batch, hw):
        try:
            soft = run_soft(case)
            diff = differences(soft, silicon)
        except Exception as exc:            # a crash of the soft FPU is a divergence too
            diff = [f"soft FPU raised {exc!r}"]
        if diff:
            bad.append((case, diff))
    return bad


def campaign(examples: int, insns: int, seed: int | None, out=sys.stdout) -> int:
    harness = build_harness()
    divergent = []
    ran = [0]

    @settings(max_examples=max(1, examples // BATCH), deadline=None, database=None,
              derandomize=seed is None, suppress_health_check=list(HealthCheck),
              phases=["generate"])
    @given(st.lists(cases(insns), min_size=BATCH, max_size=BATCH))
    def run(batch):
        ran[0] += len(batch)
        divergent.extend(check_batch(batch, harness))

    if seed is not None:
        run = __import__("hypothesis").seed(seed)(run)
    start = time.monotonic()
    run()
    groups = Counter(describe(case).split(";")[0] for case, _ in divergent)
    print(f"x87 difftest: {ran[0]} cases, {len(divergent)} divergent, "
          f"{time.monotonic() - start:.1f} s", file=out)
    for name, count in groups.most_common():
        print(f"  {count:6d}  {name}", file=out)
    shown = set()
    for case, diff in divergent:
        group = describe(case).split(";")[0].split(" ")[0]
        if group in shown or len(shown) >= 20:
            continue
        shown.add(group)
        print(f"- {describe(case)}: {'; '.join(diff)}\n  {replay_source(case)}", file=out)
    return 1 if divergent else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ringvisor.cpu.x87.silicon")
    parser.add_argument("--examples", type=int, default=20000, help="cases to run")
    parser.add_argument("--insns", type=int, default=3, help="instructions per case, at most")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: derandomized)")
    args = parser.parse_args(argv)
    try:
        return campaign(args.examples, args.insns, args.seed)
    except HarnessUnavailable as exc:
        print(f"ringvisor: x87 harness unavailable: {exc}", file=sys.stderr)
        return 2
