"""PAUSE (F3 90) on the soft engine: a NOP on one CPU; with `yield_on_pause()`
(several CPUs, machine/smp.py) it retires and ends `run()` with `Paused`,
on the reference interpreter, the cold path and compiled traces alike."""
import pytest

from ringvisor.exits import Halt, Interrupted, Paused
from cpu_rig import CODE, Rig, asm

# A spin loop: count in EAX, PAUSE each time round, HLT after 5 turns.
SPIN = """
    xor eax, eax
1:  inc eax
    pause
    cmp eax, 5
    jne 1b
    hlt
"""
PAUSE_AT = CODE + len(asm("xor eax, eax\ninc eax"))
AFTER_PAUSE = PAUSE_AT + 2

# path -> (use_blocks, hot): the interpreter, the cold path, compiled traces
PATHS = {"interpreter": (False, 16), "cold": (True, 10**6), "compiled": (True, 1)}


def rig(path: str, yields: bool, code: str = SPIN) -> Rig:
    r = Rig()
    r.cpu.use_blocks, r.cpu.blocks.hot = PATHS[path]
    r.cpu.yield_on_pause(yields)
    r.protected(code)
    return r


def exits(r: Rig, budget: int = 1000) -> list[tuple[str, int, int, int]]:
    """(exit, EIP, EAX, retired instructions) of each run() until HLT."""
    seen = []
    for _ in range(50):
        e = r.run(budget)
        seen.append((e.__class__.__name__, r.cpu.eip, r.cpu.r[0], r.cpu.instructions))
        if isinstance(e, Halt):
            return seen
    raise AssertionError(f"no HLT: {seen}")


@pytest.mark.parametrize("path", PATHS)
def test_one_cpu_pause_is_a_nop_without_an_exit(path):
    r = rig(path, yields=False)
    assert exits(r) == [("Halt", CODE + len(asm(SPIN)), 5, 1 + 5 * 4 + 1)]
    assert r.cpu.pause_count == 0 and not r.cpu.paused


@pytest.mark.parametrize("path", PATHS)
def test_each_pause_ends_run_after_it_retires(path):
    r = rig(path, yields=True)
    seen = exits(r)
    # After the k-th PAUSE: EIP past it, EAX = k, 1 + 2k instructions retired
    # (XOR, then INC PAUSE per turn, the CMP JNE of the earlier turns).
    assert seen[:5] == [("Paused", AFTER_PAUSE, k, 1 + 2 * k + 2 * (k - 1)) for k in range(1, 6)]
    assert seen[5][0] == "Halt" and seen[5][2] == 5
    assert r.cpu.pause_count == 5


def test_every_path_yields_at_the_same_instructions():
    runs = {path: exits(rig(path, yields=True)) for path in PATHS}
    assert runs["cold"] == runs["interpreter"] == runs["compiled"]


def test_the_compiled_trace_ends_at_pause_when_yielding():
    r = rig("compiled", yields=True)
    exits(r)
    assert r.cpu.blocks.compiled > 0
    sources = [b.source for b in r.cpu.blocks.blocks.values()]
    # The trace from the loop head holds INC then the PAUSE's handler call and returns.
    assert any("h1(cpu, i1)" in src and "return\n" in src for src in sources), sources


def test_the_compiled_trace_runs_over_pause_when_not_yielding():
    r = rig("compiled", yields=False)
    exits(r)
    # One trace, the whole loop: PAUSE inlined as nothing, no handler call.
    assert r.cpu.blocks.compiled > 0
    assert not any("h1(cpu, i1)" in b.source for b in r.cpu.blocks.blocks.values())


def test_turning_yields_on_drops_the_traces_compiled_without():
    r = rig("compiled", yields=False)
    exits(r)                           # compiles the loop with PAUSE inlined
    assert r.cpu.blocks.compiled > 0
    r.cpu.yield_on_pause(True)
    r.protected(SPIN)                  # the same code again
    assert isinstance(r.run(1000), Paused) and r.cpu.eip == AFTER_PAUSE
    r.cpu.yield_on_pause(False)
    assert isinstance(r.run(1000), Halt) and r.cpu.pause_count == 1


@pytest.mark.parametrize("path", PATHS)
def test_pause_as_the_budgets_last_instruction_yields_once(path):
    r = rig(path, yields=True)
    e = r.run(3)                       # XOR INC PAUSE: the budget ends with the PAUSE
    assert isinstance(e, Paused) and r.cpu.instructions == 3
    e = r.run(2)                       # no stale yield: CMP JNE run
    assert isinstance(e, Interrupted) and r.cpu.instructions == 5 and r.cpu.pause_count == 1


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("nop", ["nop", ".byte 0xf2, 0x90"])
def test_only_f3_90_yields(path, nop):
    r = rig(path, yields=True, code=SPIN.replace("pause", nop))
    assert exits(r)[0][0] == "Halt" and r.cpu.pause_count == 0


def test_set_state_forgets_a_pending_yield():
    r = rig("interpreter", yields=True)
    r.cpu.paused = True
    r.protected(SPIN)
    assert isinstance(r.run(3), Paused) and r.cpu.instructions == 3


class NoPauseExiting:
    """VMX non-root operation whose VMM leaves PAUSE alone (XOR and INC only
    need the non-root object to be there; test_vmx_exits has the exits)."""
    def __init__(self):
        self.pauses = 0

    def pause(self, cpu):
        self.pauses += 1


def test_in_vmx_non_root_operation_pause_does_not_yield():
    """There the VMM's PAUSE exiting decides what PAUSE does, not the machine."""
    r = rig("interpreter", yields=True)
    r.cpu.vmx = vmx = NoPauseExiting()
    try:
        assert isinstance(r.run(3), Interrupted) and r.cpu.pause_count == 0 and vmx.pauses == 1
    finally:
        r.cpu.vmx = None
