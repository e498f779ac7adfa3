"""MIPS of the soft engine on compute-bound 32-bit code.

    python -m ringvisor.cpu.bench [--instructions N] [--repeat N] [--interpreter] [--profile]
                                  [--vmx] [--vmx-exits]

The workload is a 32-bit flat protected-mode loop mixing ALU, shifts,
memory loads/stores, a near call/ret and a conditional branch (a checksum
over a 4 KiB buffer), the kind of code a guest kernel spends its time in. MIPS are computed from
process CPU time (other processes on a shared machine do not count), the
median of several runs; wall-clock MIPS are printed beside. `--vmx` runs
the same loop as a guest in VMX non-root operation (EPT, VPID, the
preemption timer ending the run: cpu/vmx/), to show that code causing no
VM exit runs as fast as in root operation. `--vmx-exits` measures the
other side: the host time of one VM exit round trip (a guest looping on
CPUID; exit, the monitor's RIP update, VMRESUME).
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


def _non_root(eng, mem, state: CpuState):
    """A run function entering `state` as a VMX guest: identity EPT over
    the first 3 MiB (tables from 3 MiB on), VPID, unrestricted guest."""
    from ringvisor.cpu.vmx import capabilities as CAP
    from ringvisor.cpu.vmx import controls as C
    from ringvisor.cpu.vmx.ept import identity_tables
    from ringvisor.cpu.vmx.operation import vm_enter
    from ringvisor.cpu.vmx.state import write_guest_state
    from ringvisor.cpu.vmx.vmcs import Vmcs
    frames = iter(range(3 << 20, 4 << 20, 0x1000))
    root = identity_tables(lambda: next(frames), lambda a, v: mem.write(a, v.to_bytes(8, "little")),
                           3 << 20)
    v = Vmcs()
    state.cr4 |= CAP.CR4_VMXE
    state.cr0 |= 0x20
    write_guest_state(v, state)
    v["EPT_POINTER"], v["VPID"] = root | 6 | 3 << 3, 1
    v["PIN_BASED_VM_EXEC_CONTROL"] = CAP.adjust(CAP.IA32_VMX_TRUE_PINBASED_CTLS, C.PIN_PREEMPTION_TIMER)
    v["CPU_BASED_VM_EXEC_CONTROL"] = CAP.adjust(CAP.IA32_VMX_TRUE_PROCBASED_CTLS, C.CPU_ACTIVATE_SECONDARY)
    v["SECONDARY_VM_EXEC_CONTROL"] = C.SEC_ENABLE_EPT | C.SEC_ENABLE_VPID | C.SEC_UNRESTRICTED_GUEST
    v["VM_EXIT_CONTROLS"] = CAP.adjust(CAP.IA32_VMX_TRUE_EXIT_CTLS, 0)
    v["VM_ENTRY_CONTROLS"] = CAP.adjust(CAP.IA32_VMX_TRUE_ENTRY_CTLS, 0)
    v["CR4_GUEST_HOST_MASK"] = CAP.CR4_VMXE
    v["HOST_CR0"], v["HOST_CR4"] = 0x80000031, CAP.CR4_VMXE
    v["HOST_CS_SELECTOR"], v["HOST_SS_SELECTOR"], v["HOST_TR_SELECTOR"] = 0x08, 0x10, 0x18

    def run(max_instructions: int):
        v["VMX_PREEMPTION_TIMER_VALUE"] = max_instructions
        exit = vm_enter(eng, v, launch=not v.launched)
        if exit.basic != 52:
            raise RuntimeError(f"unexpected VM exit {exit.name}")
    run.vmcs = v
    return run


def measure_exits(n: int) -> tuple[float, float]:
    """(µs per VM exit round trip by process CPU time, by wall time)."""
    from ringvisor.cpu import SoftEngine
    from ringvisor.cpu.vmx.operation import vm_enter
    mem = GuestMemory(4 << 20)
    mem.write(0x10000, bytes.fromhex("0fa2" "ebfc"))    # 1: cpuid; jmp 1b
    eng = SoftEngine(mem, PortBus(), MmioBus())
    v = _non_root(eng, mem, CpuState.protected_flat(0x10000, esp=0x80000)).vmcs
    v["VMX_PREEMPTION_TIMER_VALUE"] = 1 << 30

    def loop(k: int) -> None:
        for _ in range(k):
            exit = vm_enter(eng, v, launch=not v.launched)
            if exit.basic != 10:
                raise RuntimeError(f"unexpected VM exit {exit.name}")
            v["GUEST_RIP"] = v["GUEST_RIP"] + exit.instruction_length
    loop(200)
    t, c = time.perf_counter(), time.process_time()
    loop(n)
    return (time.process_time() - c) / n * 1e6, (time.perf_counter() - t) / n * 1e6


def measure(n: int, blocks: bool = True, vmx: bool = False) -> tuple[float, float, int]:
    """(MIPS by process CPU time, MIPS by wall time, instructions) of one run."""
    from ringvisor.cpu import SoftEngine
    mem = GuestMemory(4 << 20)
    mem.write(0x10000, CODE)
    eng = SoftEngine(mem, PortBus(), MmioBus())
    eng.use_blocks = blocks
    state = CpuState.protected_flat(0x10000, esp=0x80000)
    if vmx:
        eng.slice = 1 << 30
        run = _non_root(eng, mem, state)
    else:
        eng.set_state(state)
        run = eng.run
    run(max_instructions=20_000)                         # warm the block cache
    start_n = eng.instructions
    t, c = time.perf_counter(), time.process_time()
    while eng.instructions - start_n < n:
        run(max_instructions=n)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    done = eng.instructions - start_n
    return done / dc / 1e6, done / dt / 1e6, done


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ringvisor.cpu.bench")
    ap.add_argument("--instructions", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=5, help="runs; the median is reported")
    ap.add_argument("--interpreter", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--vmx", action="store_true", help="run the loop in VMX non-root operation")
    ap.add_argument("--vmx-exits", action="store_true", help="host time of one VM exit round trip")
    a = ap.parse_args(argv)
    if a.profile:
        import cProfile
        import pstats
        cProfile.runctx("measure(a.instructions, not a.interpreter, a.vmx)", globals(), locals(),
                        "/tmp/rv.prof")
        pstats.Stats("/tmp/rv.prof").sort_stats("tottime").print_stats(12)
        return 0
    if a.vmx_exits:
        runs = [measure_exits(max(1000, a.instructions // 1000)) for _ in range(a.repeat)]
        print(f"VM exit round trip (CPUID exit, RIP update, VMRESUME): "
              f"{statistics.median(r[0] for r in runs):.1f} µs (median of {a.repeat} runs, process "
              f"CPU time; wall clock {statistics.median(r[1] for r in runs):.1f} µs)")
        return 0
    runs = [measure(a.instructions, not a.interpreter, a.vmx) for _ in range(a.repeat)]
    cpu = statistics.median(r[0] for r in runs)
    wall = statistics.median(r[1] for r in runs)
    where = " in VMX non-root operation (EPT)" if a.vmx else ""
    print(f"{'interpreter' if a.interpreter else 'compiled blocks'}{where}: {cpu:.2f} MIPS "
          f"(median of {a.repeat} runs of {runs[0][2]} instructions, process CPU time; "
          f"wall clock {wall:.2f} MIPS)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
