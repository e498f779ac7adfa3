"""Virtual-8086 mode under the trap (ring 1, ring 3) and bt monitors
(monitors/common/v86.py, v86_emulate.py): the guest kernel IRETs to VM=1,
its 8086 program runs on the real CPU in virtual-8086 mode at real IOPL 0,
and the guest kernel sees what bare hardware shows it.

guests/tests/v86.c prints the same verdict line as natively (and as QEMU,
test_v86_kernel.py): at IOPL 0 the program's CLI/STI/INT n reach the guest
kernel's #GP handler with the v86 frame, at IOPL 3 they run (emulated by
the monitor against the virtual flags) and INT n goes through the guest's
DPL-3 gates; the OUT the guest TSS does not grant is the guest's #GP at
both."""
from __future__ import annotations

import pytest

from monitor_rig import run
from test_v86_kernel import VERDICTS

MONITORS = [("trap", 1), ("trap", 3), ("bt", 1)]


@pytest.mark.parametrize("iopl", sorted(VERDICTS))
@pytest.mark.parametrize("technique,ring", MONITORS)
def test_v86_kernel_verdict_as_natively(test_kernels, technique, ring, iopl):
    result, out = run(test_kernels / "v86.elf", f"entry=iret {iopl}", technique=technique, ring=ring)
    assert result.status == 0, out
    assert out[-2:] == ["v86: hello from virtual-8086 mode", VERDICTS[iopl]]
