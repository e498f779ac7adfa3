"""Per-file pass rates of the MOO vectors on the soft engine.

    python -m ringvisor.testvectors.report            # every test of every file
    python -m ringvisor.testvectors.report --sample 500
"""
from __future__ import annotations

import argparse
import time

from ringvisor.testvectors.runner import VectorRunner, run_file, vector_files


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ringvisor.testvectors.report")
    ap.add_argument("--sample", type=int, default=None, help="tests per file (default: all)")
    ap.add_argument("--failures", action="store_true", help="list the first failures")
    args = ap.parse_args(argv)
    runner = VectorRunner()
    print(f"{'file':40} {'cpu':5} {'tests':>6} {'pass':>6} {'fail':>5} {'excl':>5} "
          f"{'rate':>8}  exclusions")
    tot = {"pass": 0, "fail": 0, "excluded": 0}
    t0 = time.time()
    for f in vector_files():
        res = run_file(f, sample=args.sample, runner=runner)
        c = res["counts"]
        applicable = c["pass"] + c["fail"]
        rate = 100.0 * c["pass"] / applicable if applicable else 100.0
        excl = ", ".join(f"{k}×{v}" for k, v in sorted(res["excluded"].items()))
        print(f"{res['file']:40} {res['cpu']:5} {res['total']:6} {c['pass']:6} {c['fail']:5} "
              f"{c['excluded']:5} {rate:7.2f}%  {excl}")
        for k in tot:
            tot[k] += c[k]
        if args.failures:
            for fl in res["failures"][:5]:
                print("    ", fl)
    applicable = tot["pass"] + tot["fail"]
    print(f"{'total':40} {'':5} {sum(tot.values()):6} {tot['pass']:6} {tot['fail']:5} "
          f"{tot['excluded']:5} {100.0 * tot['pass'] / max(applicable, 1):7.2f}%  "
          f"({time.time() - t0:.0f} s)")
    return 0 if tot["fail"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
