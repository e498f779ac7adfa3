#!/usr/bin/env python3
"""What one port-I/O exit costs: ringvisor against QEMU (-accel kvm), in one run.

The same Multiboot payload (guests/tests/portloop.elf) runs N one-byte port
writes from ring 3 with IOPL 3 and exits through port 0xf4. (On PVM hosts
the host kernel emulates every instruction of this 32-bit guest, the loop's
few included, for ringvisor and QEMU alike.)
Each VMM runs it with n=N and n=0; (t_N - t_0) / N is the cost per write,
boot and teardown cancelling out. Medians of --runs runs each.

Two ports are measured:
- raw: an unassigned port (0x99). Every write is a full exit to the VMM's
  userspace, which finds no device: the bare exit round trip.
- debugcon: the Bochs/QEMU debug console (0xe9), a write-only device. QEMU
  (isa-debugcon) takes one exit per byte; ringvisor lets the host kernel
  queue the writes (coalesced PIO) and drains the queue in batches.
The last line is the debugcon figure:
    exit_cost_us ringvisor=<x> qemu=<y> ratio=<x/y>
"""
from __future__ import annotations

import argparse
import shutil
import sys

from common import ROOT, ensure_built, median, python, timed

PAYLOAD = ROOT / "guests" / "tests" / "build" / "portloop.elf"


def ringvisor_cmd(n: int, port: int) -> list[str]:
    return [python(), "-m", "ringvisor", "run", str(PAYLOAD), "--engine", "kvm", "--technique", "hw",
            "--cmdline", f"n={n} ring=3 port={port:#x}", "--serial", "file:/dev/null", "--memory", "16M"]


def qemu_cmd(n: int, port: int) -> list[str]:
    return ["qemu-system-i386", "-accel", "kvm", "-m", "16", "-kernel", str(PAYLOAD),
            "-append", f"n={n} ring=3 port={port:#x}", "-nodefaults", "-nographic", "-display", "none",
            "-monitor", "none", "-serial", "none", "-no-reboot",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=1",
            "-chardev", "file,id=dbg,path=/dev/null", "-device", "isa-debugcon,iobase=0xe9,chardev=dbg"]


def per_write_us(make_cmd, n: int, port: int, runs: int, rc: int) -> float:
    samples = []
    for _ in range(runs):
        t_n = timed(make_cmd(n, port), expect_rc=rc)
        t_0 = timed(make_cmd(0, port), expect_rc=rc)
        samples.append((t_n - t_0) / n * 1e6)
    return median(samples)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--writes", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    ensure_built(PAYLOAD)
    if not shutil.which("qemu-system-i386"):
        print("qemu-system-i386 not found: apt-get install qemu-system-x86", file=sys.stderr)
        return 2
    from ringvisor.kvm.backend import detect
    print(f"backend: {detect().description}")
    print(f"payload: {PAYLOAD.name}, {args.writes} writes from ring 3, medians of {args.runs} runs")
    results = {}
    for label, port in (("raw_exit_us", 0x99), ("exit_cost_us", 0xE9)):
        rv = per_write_us(ringvisor_cmd, args.writes, port, args.runs, rc=0)
        qemu = per_write_us(qemu_cmd, args.writes, port, args.runs, rc=1)   # QEMU exits (0 << 1) | 1
        results[label] = (rv, qemu)
        what = "unassigned port 0x99 (every write a full exit)" if port == 0x99 else \
            "debugcon 0xe9 (ringvisor: coalesced PIO)"
        print(f"{what}: ringvisor {rv:.2f} us, qemu {qemu:.2f} us per write")
    for label, (rv, qemu) in results.items():
        print(f"{label} ringvisor={rv:.2f} qemu={qemu:.2f} ratio={rv / qemu:.2f}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    raise SystemExit(main())
