"""python -m ringvisor.difftest: a differential campaign, or one case replayed.

    python -m ringvisor.difftest [--examples N] [--cpl 3,0] [--seed S] [--interpreter]
    python -m ringvisor.difftest --replay HEX [--cpl N] [--eflags X] [--reg eax=1 ...]
"""
from __future__ import annotations

import argparse
import os
import sys


def replay(args) -> int:
    from ringvisor.difftest.compare import differences, listing
    from ringvisor.difftest.harness import Harness
    from ringvisor.difftest.replay import case_from_hex
    from ringvisor.difftest.runners import SoftRunner
    regs = {k: int(v, 0) for k, v in (r.split("=", 1) for r in args.reg)}
    case = case_from_hex(args.replay, cpl=args.cpl, eflags=int(args.eflags, 0), **regs)
    program = case.program()
    print(listing(program))
    h = Harness()
    try:
        interp = SoftRunner(paging=h.soft.paging, blocks=False)
        runs = {"kvm": h.kvm.run(case, program), "soft": h.soft.run(case, program),
                "soft interpreter": interp.run(case, program), "soft other paging": h.soft_other.run(case, program)}
        interp.close()
        for name, out in runs.items():
            if not hasattr(out, "event"):
                print(f"{name:18} skipped: {out}")
                continue
            print(f"{name:18} {out.event} vector={out.vector} code={out.error_code} eip={out.eip:#x} "
                  f"eflags={out.eflags:#x} regs={' '.join(f'{r:x}' for r in out.regs)} {out.detail}")
        if hasattr(runs["kvm"], "event"):
            diffs = differences(runs["kvm"], runs["soft"], program)
            print("kvm vs soft: " + ("same" if not diffs else "\n  " + "\n  ".join(diffs)))
            return 1 if diffs else 0
        return 0
    finally:
        h.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ringvisor.difftest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--examples", type=int,
                   default=int(os.environ.get("RINGVISOR_FUZZ_EXAMPLES", "20000")),
                   help="cases per CPL (default $RINGVISOR_FUZZ_EXAMPLES or 20000)")
    p.add_argument("--cpl", default="3,0", help="CPLs to test (3,0), or the CPL of --replay")
    p.add_argument("--seed", type=int, help="hypothesis seed (default: the time)")
    p.add_argument("--interpreter", action="store_true",
                   help="soft engine without block compilation (the reference interpreter)")
    p.add_argument("--replay", metavar="HEX", help="run these code bytes once on every engine")
    p.add_argument("--eflags", default="0x2")
    p.add_argument("--reg", action="append", default=[], metavar="NAME=VALUE")
    args = p.parse_args(argv)
    if args.replay:
        args.cpl = int(args.cpl.split(",")[0])
        return replay(args)
    from ringvisor.difftest.campaign import run
    return run(args.examples, tuple(int(c) for c in args.cpl.split(",")), args.seed,
               blocks=not args.interpreter)


if __name__ == "__main__":
    sys.exit(main())
