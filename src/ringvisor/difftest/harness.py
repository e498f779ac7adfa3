"""The differential harness: one program, three runs, two comparisons.

* kvm engine vs soft engine, same paging setting: silicon on VT-x/AMD-V,
  the host kernel's instruction emulator on PVM (every CPL), against the
  soft CPU; a divergence is rerun on the reference interpreter to say
  whether compiled blocks alone diverge.
* soft engine with identity paging vs without: paging must be transparent.

On PVM the kvm side runs without paging (PVM raises #GP when a 32-bit guest
sets CR0.PG), so the paging run is soft-only; on VT-x/AMD-V both sides of
the first comparison run with paging and the soft-only one without.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ringvisor.difftest.compare import describe, differences
from ringvisor.difftest.program import Case
from ringvisor.difftest.pvm import EMULATOR_FLAG_QUIRKS, emulator_wrong
from ringvisor.difftest.runners import KvmRunner, Skip, SoftRunner


@dataclass
class Verdict:
    skip: Skip | None = None
    divergences: list[str] = field(default_factory=list)
    signatures: list[tuple] = field(default_factory=list)     # what differs, and where


@dataclass
class Stats:
    run: Counter = field(default_factory=Counter)           # by CPL
    compared: Counter = field(default_factory=Counter)      # by CPL
    skipped: Counter = field(default_factory=Counter)       # by (CPL, mnemonic)
    diverged: Counter = field(default_factory=Counter)      # by CPL

    def summary(self, backend: str = "", kvm=None) -> str:
        lines = [f"backend: {backend}"] if backend else []
        if kvm is not None and kvm.runs:
            lines.append(f"kvm: {kvm.runs} runs; KVM's instruction emulator executed "
                         f"{kvm.emulated} instructions (insn_emulation), "
                         f"{kvm.emulated / kvm.runs:.1f} per run")
        for cpl in sorted(self.run):
            lines.append(f"CPL {cpl}: {self.run[cpl]} run, {self.compared[cpl]} compared, "
                         f"{sum(n for (c, _), n in self.skipped.items() if c == cpl)} skipped, "
                         f"{self.diverged[cpl]} diverged")
            skips = sorted(((m, n) for (c, m), n in self.skipped.items() if c == cpl),
                           key=lambda p: -p[1])
            if skips:
                lines.append("  skipped (engine could not run it): " +
                             ", ".join(f"{m}×{n}" for m, n in skips))
        return "\n".join(lines)


def _signature(names, diffs, program, outcome) -> tuple:
    where = program.mnemonic_at(outcome.eip) if outcome.event == "exception" else outcome.event
    return names, tuple(d.split(":")[0] for d in diffs), where


class Harness:
    def __init__(self, kvm: bool = True, paging: bool | None = None, blocks: bool = True):
        self.kvm = KvmRunner(paging) if kvm else None
        same = self.kvm.paging if self.kvm else bool(paging)
        self.soft = SoftRunner(paging=same, blocks=blocks)
        self.soft_other = SoftRunner(paging=not same, blocks=blocks)
        self.interp: SoftRunner | None = None
        self.stats = Stats()
        emulated = self.kvm is not None and self.kvm.backend.emulates_ring0
        self.quirks = EMULATOR_FLAG_QUIRKS if emulated else {}

    def summary(self) -> str:
        return self.stats.summary(self.backend, self.kvm)

    @property
    def backend(self) -> str:
        return self.kvm.backend.description if self.kvm else "soft only"

    def check(self, case: Case) -> Verdict:
        program = case.program(self.quirks)
        self.stats.run[case.cpl] += 1
        soft = self.soft.run(case, program)
        verdict = Verdict()
        names = ("soft" + (" paging" if self.soft.paging else ""),
                 "soft" + (" paging" if self.soft_other.paging else ""))
        if not program.shows_paging:          # CR0.PG and CR3 differ by design
            other = self.soft_other.run(case, program)
            diffs = differences(soft, other, program)
            if diffs:
                verdict.divergences.append(describe(case, program, names, diffs))
                verdict.signatures.append(_signature(names, diffs, program, soft))
        wrong = emulator_wrong(program) if self.quirks else None
        if wrong:
            self.stats.skipped[case.cpl, wrong] += 1
            verdict.skip = Skip("known emulator divergence", wrong)
            return verdict
        if self.kvm is not None:
            real = self.kvm.run(case, program)
            if isinstance(real, Skip):
                self.stats.skipped[case.cpl, real.mnemonic] += 1
                verdict.skip = real
                return verdict
            lacking = self._emulator_lacks(case, program, real, soft)
            if lacking:
                self.stats.skipped[case.cpl, lacking.mnemonic] += 1
                verdict.skip = lacking
                return verdict
            diffs = differences(real, soft, program)
            if diffs:
                kind = ("kvm", names[0] + self._which_path(case, program, real))
                verdict.divergences.append(describe(case, program, kind, diffs))
                verdict.signatures.append(_signature(kind, diffs, program, real))
        self.stats.compared[case.cpl] += 1
        if verdict.divergences:
            self.stats.diverged[case.cpl] += 1
        return verdict

    def _which_path(self, case, program, real) -> str:
        """Where a divergence lives: rerun on the reference interpreter; if
        that agrees with kvm, only compiled blocks diverge."""
        if not self.soft.blocks:
            return " interpreter"
        if self.interp is None:
            self.interp = SoftRunner(paging=self.soft.paging, blocks=False)
        if differences(real, self.interp.run(case, program), program):
            return " (the interpreter too)"
        return " blocks (the interpreter agrees with kvm)"

    def _emulator_lacks(self, case, program, real, soft) -> Skip | None:
        """KVM's emulator turns an instruction it lacks into #UD when CPL > 0
        (handle_emulation_failure); where the soft CPU ran that instruction,
        and it is not one the generator meant to be undefined, the test
        says nothing about the soft CPU. Only where KVM emulates guest code."""
        if not (self.kvm.backend.emulates_ring0 and case.cpl > 0 and real.event == "exception"
                and real.vector == 6):
            return None
        if soft.event == "exception" and soft.vector == 6 and soft.eip == real.eip:
            return None
        mnemonic = program.mnemonic_at(real.eip)
        if mnemonic is None or mnemonic == "#UD":
            return None
        return Skip("emulator #UD at CPL > 0", mnemonic)

    def close(self) -> None:
        for runner in (self.kvm, self.soft, self.soft_other, self.interp):
            if runner is not None:
                runner.close()
