"""A long differential campaign (`make fuzz-cpu`): many hypothesis cases at
each CPL, every divergence kept (not only the first), reduced to a short
case by removing instructions and zeroing registers while it still
diverges, grouped by what differs and where (Verdict.signatures), and
printed with a replay command."""
from __future__ import annotations

import time
from dataclasses import replace

from hypothesis import HealthCheck, Phase, given, seed as hypothesis_seed, settings

from ringvisor.difftest.generators import cases
from ringvisor.difftest.harness import Harness
from ringvisor.difftest.program import Branch, Case, Insn, Loop
from ringvisor.difftest.world import CODE


def _diverges(harness: Harness, case: Case, signature: tuple | None) -> bool:
    """Still the same divergence (same signature), or any if None."""
    try:
        verdict = harness.check(case)
    except ValueError:                       # a reduction made a branch body invalid
        return False
    if signature is None:
        return bool(verdict.divergences)
    return signature in verdict.signatures


def _without(nodes: tuple, i: int) -> tuple:
    return nodes[:i] + nodes[i + 1:]


def reduce(harness: Harness, case: Case, signature: tuple | None = None) -> Case:
    """Greedy: drop nodes (flattening branches), then zero registers and
    status flags, keeping each change that still diverges the same way."""
    changed = True
    while changed:
        changed = False
        nodes = case.nodes
        for i in range(len(nodes) - 1, -1, -1):
            options = [_without(nodes, i)]
            if isinstance(nodes[i], (Branch, Loop)):
                options.append(nodes[:i] + nodes[i].body + nodes[i + 1:])
            for option in options:
                trial = replace(case, nodes=option)
                if option and _diverges(harness, trial, signature):
                    case, nodes, changed = trial, option, True
                    break
    for name, value in case.regs.items():
        if value:
            trial = replace(case, regs={**case.regs, name: 0})
            if _diverges(harness, trial, signature):
                case = trial
    if case.eflags & 0x8D5:
        trial = replace(case, eflags=case.eflags & ~0x8D5)
        if _diverges(harness, trial, signature):
            case = trial
    return case


def replay_command(case: Case) -> str:
    program = case.program()
    code = program.code[:program.end_eip - CODE]
    regs = " ".join(f"--reg {k}={v:#x}" for k, v in case.regs.items() if v)
    return (f"python -m ringvisor.difftest --replay {code.hex()} --cpl {case.cpl} "
            f"--eflags {case.eflags:#x} {regs}".rstrip())


def _flat(nodes):
    for n in nodes:
        if isinstance(n, Insn):
            yield n
        else:
            yield from _flat(n.body)


def run(examples: int, cpls=(3, 0), seed: int | None = None, max_reports: int = 20, out=print,
        blocks: bool = True) -> int:
    seed = int(time.time()) if seed is None else seed
    harness = Harness(blocks=blocks)
    found: dict[tuple, tuple[Case, str]] = {}
    started = time.monotonic()
    try:
        for cpl in cpls:
            interrupts = not harness.kvm.backend.emulates_ring0

            @hypothesis_seed(seed + cpl)
            @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=cases(cpl, interrupts=interrupts))
            def campaign(case):
                verdict = harness.check(case)
                for text, sig in zip(verdict.divergences, verdict.signatures):
                    found.setdefault(sig, (case, text))
            t0 = time.monotonic()
            campaign()
            out(f"CPL {cpl}: {examples} cases in {time.monotonic() - t0:.0f} s")
        out(f"\nseed {seed}, {time.monotonic() - started:.0f} s\n" + harness.summary())
        out(f"divergences: {len(found)} distinct")
        for n, (sig, (case, text)) in enumerate(found.items()):
            if n >= max_reports:
                out(f"... and {len(found) - max_reports} more")
                break
            small = reduce(harness, case, sig)
            verdict = harness.check(small)
            texts = [t for t, s in zip(verdict.divergences, verdict.signatures) if s == sig]
            out("\n" + (texts[0] if texts else text) + "\n  replay: " + replay_command(small))
    finally:
        harness.close()
    return 1 if found else 0
