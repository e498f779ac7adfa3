"""`ringvisor demo` (the README's first command) runs every step to the end."""
from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.kvm
def test_demo_runs_every_step(test_kernels, ringos):
    proc = subprocess.run([sys.executable, "-m", "ringvisor", "demo"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.replace("\r", "")
    assert "hello from the ringvisor test kernel" in out
    assert "unassigned accesses: port write 0x99 x2000" in proc.stderr
    assert out.rstrip().endswith("virtualization visible: no\nringos: exit status 0")
    # The probe's verdict on bare hardware, under trap, pv and bt, in that order.
    verdicts = [l.split(": ")[1] for l in out.splitlines() if l.startswith("virtualization visible")]
    assert verdicts == ["no", "yes", "yes", "no"]
    assert "probe popf value=0x0000 expected=0x0002 VISIBLE" in out         # the POPF hole, under trap
    # Its last line points at the Linux part: `demo --linux`, or `make linux` to fetch the kernel.
    assert "ringvisor demo --linux" in proc.stderr.rstrip().splitlines()[-1]
