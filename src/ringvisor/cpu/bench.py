"""MIPS of the soft engine on compute-bound 32-bit code.

    python -m ringvisor.cpu.bench [--instructions N] [--repeat N] [--interpreter] [--profile]

The workload is a 32-bit flat protected-mode loop mixing ALU, shifts,
memory loads/stores, a near call/ret and a conditional branch (a checksum
over a 4 KiB buffer), the kind of code a guest kernel spends its time in. MIPS are computed from
process CPU time (other processes on a shared machine do not count), the
median of several runs; wall-clock MIPS are printed beside.
"""
from __future__ import annotations

import argparse
import statistics
import time

from ringvisor.cpu_state import CpuState
from ringvisor.machine.bus import MmioBus, PortBus
from ringvisor.machine.memory import GuestMemory

# mov esi,0x20000 ; mov ecx,1024 ; xor eax,eax ; xor edx,edx
# loop: mov ebx,[esi] ; add eax,ebx ; rol eax,5 ; xor edx,eax ; lea esi,[esi+4]
#       call f ; dec ecx ; jnz loop ; jmp start
# f:    mov [esi+0x1000],edx ; ret
CODE = bytes.fromhex(
    "be00000200" "b900040000" "31c0" "31d2"
    "8b1e" "01d8" "c1c005" "31c2" "8d7604" "e805000000" "49" "75ec" "ebdc"
    "899600100000" "c3")


def measure(n: int, blocks: bool = True) -> tuple[float, float, int]:
    """(MIPS by process CPU time, MIPS by wall time, instructions) of one run."""
    from ringvisor.cpu import SoftEngine
    mem = GuestMemory(4 << 20)
    mem.write(0x10000, CODE)
    eng = SoftEngine(mem, PortBus(), MmioBus())
    eng.use_blocks = blocks
    eng.set_state(CpuState.protected_flat(0x10000, esp=0x80000))
    eng.run(max_instructions=20_000)                     # warm the block cache
    start_n = eng.instructions
    t, c = time.perf_counter(), time.process_time()
    while eng.instructions - start_n < n:
        eng.run(max_instructions=n)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    done = eng.instructions - start_n
    return done / dc / 1e6, done / dt / 1e6, done


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ringvisor.cpu.bench")
    ap.add_argument("--instructions", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=5, help="runs; the median is reported")
    ap.add_argument("--interpreter", action="store_true")
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args(argv)
    if a.profile:
        import cProfile
        import pstats
        cProfile.runctx("measure(a.instructions, not a.interpreter)", globals(), locals(), "/tmp/rv.prof")
        pstats.Stats("/tmp/rv.prof").sort_stats("tottime").print_stats(12)
        return 0
    runs = [measure(a.instructions, not a.interpreter) for _ in range(a.repeat)]
    cpu = statistics.median(r[0] for r in runs)
    wall = statistics.median(r[1] for r in runs)
    print(f"{'interpreter' if a.interpreter else 'compiled blocks'}: {cpu:.2f} MIPS "
          f"(median of {a.repeat} runs of {runs[0][2]} instructions, process CPU time; "
          f"wall clock {wall:.2f} MIPS)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
