"""The bundled guest OS on the kvm engine. On PVM hosts it cannot run (PVM
refuses 32-bit paging) and ringvisor says so in one line before booting it;
on VT-x/AMD-V hosts it must print what it prints on the soft engine, and
its probe must see the hypervisor (CPUID) and nothing else."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from ringvisor.kvm.backend import detect

pytestmark = pytest.mark.kvm
PVM = detect().name == "PVM"


def ringvisor(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "ringvisor", "run", *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=timeout)


@pytest.mark.skipif(not PVM, reason="PVM hosts only")
def test_pvm_refuses_the_paging_guest_in_one_line(ringos):
    proc = ringvisor("--workload", "probe")
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert proc.stderr.strip().startswith("ringvisor: the bundled guest OS needs 32-bit paging")
    assert "--engine soft --technique native" in proc.stderr


@pytest.mark.skipif(PVM, reason="PVM refuses 32-bit paging (CR0.PG in 32-bit mode raises #GP)")
@pytest.mark.parametrize("workload, cmdline", [("compute", "iters=10"), ("tasks", "iters=2")])
def test_kvm_and_soft_print_the_same(ringos, workload, cmdline):
    out = {}
    for engine in ("kvm", "soft"):
        proc = ringvisor("--engine", engine, "--technique", "native", "--workload", workload,
                         "--cmdline", cmdline)
        assert proc.returncode == 0, proc.stderr
        out[engine] = proc.stdout.replace("\r", "").splitlines()
    if workload == "compute":
        assert out["kvm"] == out["soft"]
    else:       # interleaving depends on timing: compare the lines each task printed
        assert sorted(out["kvm"]) == sorted(out["soft"])


@pytest.mark.skipif(PVM, reason="PVM refuses 32-bit paging (CR0.PG in 32-bit mode raises #GP)")
def test_probe_on_kvm_sees_the_hypervisor_bit_only(ringos):
    proc = ringvisor("--engine", "kvm", "--workload", "probe")
    assert proc.returncode == 0, proc.stderr
    visible = re.findall(r"^probe (\S+) .* VISIBLE$", proc.stdout, re.M)
    assert visible == ["cpuid_hypervisor_bit"]
    assert re.search(r'^probe cpuid_hypervisor_vendor value="[^"]*" max_leaf=0x[0-9a-f]{8}$', proc.stdout, re.M)
    assert "virtualization visible: yes" in proc.stdout
