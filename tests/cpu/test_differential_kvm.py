"""Differential tests: the soft CPU against the kvm engine, same code, same
start state (32-bit protected mode, flat segments, at CPL 3 and at CPL 0),
comparing registers, EFLAGS (flags the SDM leaves undefined masked), the
data area, the stack, segment selectors and the exception raised (vector,
error code, EIP). See ringvisor.difftest and the "Differential testing
against silicon" section of src/ringvisor/cpu/README.md.

What the kvm side is depends on the host. On VT-x/AMD-V it is the processor
at both CPLs, and both sides run with identity paging. On PVM (these
machines) every instruction of a 32-bit guest is executed by the host
kernel's instruction emulator, at CPL 3 as at CPL 0 (the harness counts
KVM's insn_emulation statistic), whose arithmetic runs as host
instructions; PVM refuses CR0.PG for a 32-bit guest, so the kvm side runs
without paging and paging is checked soft against soft (it must be
transparent). Cases the emulator cannot run (KVM_EXIT_INTERNAL_ERROR at
CPL 0, an injected #UD at CPL 3) are skipped and counted; divergences where
the emulator is wrong per the SDM are listed in ringvisor.difftest.pvm.

A fixed, derandomized hypothesis budget keeps this part of `make test`
under ~30 s; `make fuzz-cpu` runs a long campaign.
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings

from ringvisor.difftest.generators import cases
from ringvisor.difftest.harness import Harness

EXAMPLES = int(os.environ.get("RINGVISOR_DIFF_EXAMPLES", "800"))
MIN_COMPARED = 0.6          # a run that compares little says little


@pytest.fixture(scope="module")
def harness():
    h = Harness()
    yield h
    print("\n" + h.summary())
    h.close()


def campaign(harness, cpl: int, examples: int) -> None:
    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=cases(cpl, interrupts=not harness.kvm.backend.emulates_ring0))
    def run(case):
        verdict = harness.check(case)
        assert not verdict.divergences, "\n\n".join(verdict.divergences)
    run()
    stats = harness.stats
    assert stats.run[cpl] >= examples // 2
    assert stats.compared[cpl] >= MIN_COMPARED * stats.run[cpl], harness.summary()


@pytest.mark.kvm
def test_cpl3_soft_cpu_matches_kvm(harness):
    campaign(harness, 3, EXAMPLES)


@pytest.mark.kvm
def test_cpl0_soft_cpu_matches_kvm(harness):
    campaign(harness, 0, EXAMPLES)


def test_paging_is_transparent_on_the_soft_cpu():
    """Soft engine with identity paging against itself without: runs
    everywhere, /dev/kvm or not."""
    h = Harness(kvm=False)
    try:
        for cpl in (3, 0):
            @settings(max_examples=60, derandomize=True, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=cases(cpl, interrupts=True))
            def run(case):
                verdict = h.check(case)
                assert not verdict.divergences, "\n\n".join(verdict.divergences)
            run()
            assert h.stats.compared[cpl] == h.stats.run[cpl] >= 30
    finally:
        h.close()
