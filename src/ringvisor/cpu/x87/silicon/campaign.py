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
from ringvisor.cpu.x87.silicon.diff import describe, differences, fields, replay_source
from ringvisor.cpu.x87.state import C1
from ringvisor.cpu.x87.silicon.runner import (HarnessUnavailable, build_harness, run_silicon,
                                              run_soft)

BATCH = 20
# The transcendental instructions: silicon is within an ulp of the correctly
# rounded result, not always on it (cpu/README.md).
TRANSCENDENTAL = {0xD9F0, 0xD9F1, 0xD9F2, 0xD9F3, 0xD9F9, 0xD9FB, 0xD9FE, 0xD9FF}


def last_ulp_only(case, soft, silicon) -> bool:
    """True when a case with a transcendental instruction differs from silicon
    only by one unit in the last place of result registers (and the C1
    round-up bit that goes with it)."""
    if not any(op << 8 | modrm in TRANSCENDENTAL for op, modrm, _ in case.insns):
        return False
    if soft.fault != silicon.fault or soft.memory != silicon.memory:
        return False
    a, b = fields(soft.image), fields(silicon.image)
    for name in a:
        if a[name] == b[name]:
            continue
        if name == "FSW" and a[name] ^ b[name] == C1:
            continue
        if name.startswith("ST") and a[name] >> 64 == b[name] >> 64 and abs(a[name] - b[name]) == 1:
            continue
        if name.startswith("ST") and abs(a[name] - b[name]) == 1:     # across a binade
            continue
        return False
    return soft.eflags == silicon.eflags and soft.ax == silicon.ax


def check_batch(batch, harness=None, ulps=None, undefined=None):
    """[(case, differences)] for the cases of a batch that diverge. With a
    list `ulps`, transcendental last-ulp differences go there instead; cases
    where an instruction ran outside its SDM domain go to `undefined`."""
    hw = run_silicon(batch, harness)
    bad = []
    for case, silicon in zip(batch, hw):
        try:
            soft = run_soft(case)
            diff = differences(soft, silicon)
        except Exception as exc:            # a crash of the soft FPU is a divergence too
            diff = [f"soft FPU raised {exc!r}"]
            soft = None
        if diff and soft is not None and soft.notes:
            if undefined is not None:
                undefined.append((case, diff))
        elif diff and ulps is not None and soft is not None and last_ulp_only(case, soft, silicon):
            ulps.append((case, diff))
        elif diff:
            bad.append((case, diff))
    return bad


def campaign(examples: int, insns: int, seed: int | None, out=sys.stdout) -> int:
    harness = build_harness()
    divergent, ulps, ran_cases, undefined = [], [], [], []
    ran = [0]

    @settings(max_examples=max(1, examples // BATCH), deadline=None, database=None,
              derandomize=seed is None, suppress_health_check=list(HealthCheck),
              phases=["generate"])
    @given(st.lists(cases(insns), min_size=BATCH, max_size=BATCH))
    def run(batch):
        ran[0] += len(batch)
        ran_cases.extend(batch)
        divergent.extend(check_batch(batch, harness, ulps, undefined))

    if seed is not None:
        run = __import__("hypothesis").seed(seed)(run)
    start = time.monotonic()
    run()
    groups = Counter(describe(case).split(";")[0] for case, _ in divergent)
    transcendental = sum(1 for case, _ in [(c, 0) for c in ran_cases]
                         if any(op << 8 | m in TRANSCENDENTAL for op, m, _ in case.insns))
    print(f"x87 difftest: {ran[0]} cases, {len(divergent)} divergent, "
          f"{len(ulps)} transcendental last-ulp differences "
          f"(of {transcendental} cases with a transcendental instruction), "
          f"{len(undefined)} differing outside the SDM's domain (F2XM1, FYL2XP1), "
          f"{time.monotonic() - start:.1f} s", file=out)
    for name, count in Counter(describe(case).split(";")[0] for case, _ in ulps).most_common():
        print(f"  last ulp {count:6d}  {name}", file=out)
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
    parser.add_argument("--only", default="", metavar="MNEMONICS",
                        help="draw only these instructions (comma-separated mnemonics, e.g. FSIN,FCOS)")
    args = parser.parse_args(argv)
    if args.only:
        from ringvisor.cpu.x87.silicon import cases as case_module
        try:
            case_module.restrict([m.strip() for m in args.only.split(",")])
        except ValueError as exc:
            print(f"ringvisor: {exc}", file=sys.stderr)
            return 2
    try:
        return campaign(args.examples, args.insns, args.seed)
    except HarnessUnavailable as exc:
        print(f"ringvisor: x87 harness unavailable: {exc}", file=sys.stderr)
        return 2
