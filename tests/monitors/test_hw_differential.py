"""Random kernel programs of the soft CPU's differential harness (ALU,
strings, segment loads, far transfers, PUSHF/POPF, SGDT..LSL, port I/O,
INT n, exceptions) run natively at CPL 0 and as a guest kernel in VMX
non-root operation, under nested paging and under shadow page tables:
identical registers, flags, selectors, memory and exception frames. Unlike
trap and bt there is no known divergence to tell apart: the guest kernel
runs in ring 0."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from ringvisor.difftest.compare import describe, differences
from ringvisor.difftest.generators import cases
from ringvisor.difftest.runners import SoftRunner
from hw_difftest_rig import HwRunner


@pytest.mark.parametrize("mmu,paging", [("ept", False), ("ept", True), ("shadow", True)])
def test_kernel_code_in_non_root_operation_computes_what_the_cpu_computes(mmu, paging):
    soft, hw = SoftRunner(paging=paging), HwRunner(paging=paging, mmu=mmu)
    wrong = []

    @settings(max_examples=60, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(cases(0, interrupts=True))
    def check(case):
        program = case.program({})
        native, guest = soft.run(case, program), hw.run(case, program)
        diffs = differences(native, guest, program)
        if diffs:
            wrong.append(describe(case, program, ("soft CPL 0", f"hw {mmu}"), diffs))

    try:
        check()
    finally:
        soft.close()
        hw.close()
    assert not wrong, wrong[0]
