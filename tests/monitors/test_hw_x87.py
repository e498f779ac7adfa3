"""The x87 under the hw monitor: VMX forces the real CR0.NE to 1, so for a
guest with CR0.NE=0 the monitor turns the #MF of an unmasked x87 error back
into what the guest's CPU does (FERR#, IGNNE#, the instruction retried:
monitors/hw/fpu.py). The same flat guest natively and under hw ept/shadow;
its status is the FPU status word's low byte."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from monitor_rig import run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cpu"))   # the CPU tests' assembler
from cpu_rig import asm, needs_as  # noqa: E402

pytestmark = needs_as

ZERO_DIVIDE_UNMASKED = """
    mov eax, cr0
    and eax, ~0x2e                      # NE, TS, EM, MP clear: legacy FERR# reporting
    mov cr0, eax
    fninit
    push 0x037B                         # ZM clear: zero-divide unmasked
    fldcw [esp]
    fld1
    fldz
    fdivp st(1), st                     # 1/0: ZE and ES set, error pending
    fwait                               # NE=0: FERR#, then on (IGNNE#)
    fnstsw ax
    out 0xf4, al
    hlt
"""


@pytest.mark.parametrize("technique,paging", [("native", "ept"), ("hw", "ept"), ("hw", "shadow")])
def test_unmasked_x87_error_with_cr0_ne_clear(tmp_path, technique, paging):
    image = tmp_path / "guest.bin"
    image.write_bytes(asm(ZERO_DIVIDE_UNMASKED, org=0x100000))
    result, _ = run(image, technique=technique, paging=paging, image_format="flat")
    assert result.status & 0x84 == 0x84                   # ES and ZE
    if technique == "hw":
        assert result.stats["monitor"]["x87_errors_as_ferr"] >= 1
