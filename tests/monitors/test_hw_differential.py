"""Random kernel programs of the soft CPU's differential harness (ALU,
strings, segment loads, far transfers, PUSHF/POPF, SGDT..LSL, port I/O,
INT n, exceptions) run natively and as guest code in VMX non-root
operation (kernel code, and user code at CPL 3 under the world's kernel),
under nested paging and under shadow page tables:
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


@pytest.mark.parametrize("mmu,paging,cpl", [("ept", False, 0), ("ept", True, 0), ("shadow", True, 0),
                                            ("ept", True, 3), ("shadow", True, 3)])
def test_code_in_non_root_operation_computes_what_the_cpu_computes(mmu, paging, cpl):
    soft, hw = SoftRunner(paging=paging), HwRunner(paging=paging, mmu=mmu)
    wrong = []

    @settings(max_examples=100, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(cases(cpl, interrupts=True))
    def check(case):
        program = case.program({})
        native, guest = soft.run(case, program), hw.run(case, program)
        diffs = differences(native, guest, program)
        if diffs:
            wrong.append(describe(case, program, (f"soft CPL {cpl}", f"hw {mmu}"), diffs))

    try:
        check()
    finally:
        soft.close()
        hw.close()
    assert not wrong, wrong[0]
