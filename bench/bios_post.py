"""How long Debian's SeaBIOS takes to POST on the soft engine's pc machine
(`ringvisor run --bios`), and on QEMU's TCG with the same bios.bin.

POST is measured from the reset vector to SeaBIOS's "No bootable device."
(the end of its boot attempt), also to its banner; on the soft engine in
guest instructions, virtual time and host seconds, on QEMU in host seconds
(its process start included: QEMU has no instruction count here). Medians
of --runs runs; the machine's other load shows in the spread, printed too.

    .venv/bin/python bench/bios_post.py [--runs 3] [--bios /usr/share/seabios/bios.bin]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from common import median  # noqa: E402

from ringvisor.exits import GuestStopped  # noqa: E402
from ringvisor.vm import VmConfig, build_machine  # noqa: E402

BANNER, DONE = b"SeaBIOS (version", b"No bootable device."
MEMORY = VmConfig.memory              # the same RAM on both (QEMU's pc default since 128 MiB)


def soft_run(bios: str) -> dict:
    """One POST on the soft engine: instructions and host seconds at the
    banner and at "No bootable device." (the run stops there)."""
    log = bytearray()
    marks: dict = {}
    machine = None

    def debugcon(data: bytes) -> None:
        log.extend(data)
        for name, text in (("banner", BANNER), ("done", DONE)):
            if name not in marks and text in log:
                cpu = machine.platform.cpus[0]
                marks[name] = (cpu.instructions, time.perf_counter() - start,
                               machine.platform.now_ns() / 1e9)
                if name == "done":
                    raise GuestStopped(0, "POST done")
    config = VmConfig(kernel="", engine="soft", technique="native", bios=bios)
    machine = build_machine(config, lambda data: None)
    machine.debugcon.output = debugcon
    try:
        start = time.perf_counter()
        machine.run()
    finally:
        machine.close()
    if "done" not in marks:
        raise SystemExit("SeaBIOS did not reach 'No bootable device.' on the soft engine")
    return marks


def qemu_run(bios: str, machine: str) -> float:
    """Host seconds from QEMU's start to "No bootable device." on its debug console."""
    cmd = ["qemu-system-i386", "-M", machine, "-accel", "tcg", "-m", f"{MEMORY >> 20}", "-nodefaults",
           "-display", "none", "-bios", bios, "-debugcon", "stdio",
           "-global", "isa-debugcon.iobase=0x402"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    seen = bytearray()
    try:
        while DONE not in seen:
            chunk = proc.stdout.read1(4096)
            if not chunk:
                raise SystemExit(f"QEMU ({machine}) ended before 'No bootable device.'")
            seen.extend(chunk)
        return time.perf_counter() - start
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bios", default="/usr/share/seabios/bios.bin")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if not Path(args.bios).exists():
        raise SystemExit(f"{args.bios} is missing: apt-get install seabios")
    soft = [soft_run(args.bios) for _ in range(args.runs)]
    insns = soft[0]["done"][0]
    assert all(r["done"][0] == insns for r in soft), "POST is deterministic on the soft engine"
    banner_s = median([r["banner"][1] for r in soft])
    done_s = [r["done"][1] for r in soft]
    print(f"soft engine, pc machine: banner after {soft[0]['banner'][0]:,} instructions "
          f"({banner_s:.2f} s); 'No bootable device.' after {insns:,} instructions, "
          f"{soft[0]['done'][2]:.3f} s virtual; host {median(done_s):.2f} s median "
          f"(runs: {', '.join(f'{t:.2f}' for t in done_s)}), {insns / median(done_s) / 1e6:.2f} MIPS")
    if shutil.which("qemu-system-i386") is None:
        print("qemu-system-i386 is not installed: no QEMU figures (apt-get install qemu-system-x86)")
        return
    machines = ("isapc", "pc")
    if Path(args.bios).stat().st_size > 128 << 10:
        # isapc has no 440FX PAM: a ROM above 128 KiB cannot shadow itself there (QEMU hangs).
        print("QEMU -M isapc skipped: a ROM above 128 KiB needs the PAM registers to POST")
        machines = ("pc",)
    for machine in machines:
        times = [qemu_run(args.bios, machine) for _ in range(args.runs)]
        print(f"QEMU TCG -M {machine}: 'No bootable device.' after {median(times):.2f} s median "
              f"(runs: {', '.join(f'{t:.2f}' for t in times)}); soft engine / QEMU = "
              f"{median(done_s) / median(times):.0f}x")


if __name__ == "__main__":
    main()
