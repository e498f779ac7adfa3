"""SYSENTER/SYSEXIT under the monitors (guests/tests/sysenter.c): the same
output as on bare hardware, each instruction emulated once per use, and a
SYSENTER without a SYSENTER_CS reaching the guest as #GP(0)."""
from __future__ import annotations

import pytest

from ringvisor.cpu_state import CpuState, Segment, TableRegister
from ringvisor.monitors.common import fast_syscall
from ringvisor.monitors.common.guest_mmu import VirtualFault
from monitor_rig import machine, run

CALLS = 40
EXPECTED = (f"sysenter calls={CALLS} sum={CALLS * (CALLS + 1) // 2} bad_stack=0 bad_selectors=0 "
            "user_cs=0x0000001b user_ss=0x00000023")


def test_native_reference(test_kernels):
    result, out = run(test_kernels / "sysenter.elf", f"calls={CALLS}", technique="native")
    assert result.status == 0 and EXPECTED in out


@pytest.mark.kvm
def test_kvm_reference(test_kernels):
    """The kvm engine agrees (paging off, so it runs on PVM hosts too)."""
    from ringvisor.vm import VmConfig, build_machine
    out = bytearray()
    m = build_machine(VmConfig(kernel=str(test_kernels / "sysenter.elf"), cmdline=f"calls={CALLS}",
                               timeout=120), out.extend)
    try:
        result = m.run()
    finally:
        m.close()
    assert result.status == 0 and EXPECTED in out.decode().replace("\r", "").splitlines()


@pytest.mark.parametrize("technique,ring", [("trap", 1), ("trap", 3), ("bt", 1)])
def test_round_trips_under_a_monitor(test_kernels, technique, ring):
    result, out = run(test_kernels / "sysenter.elf", f"calls={CALLS}", technique=technique, ring=ring)
    assert result.status == 0 and EXPECTED in out
    emulated = result.stats["monitor"]["emulated"]
    if technique == "trap":                     # bt counts its callouts apart
        assert emulated["SYSENTER"] == CALLS
        assert emulated["SYSEXIT"] == CALLS + 1  # the kernel's first entry to ring 3 too


class _Mon:
    """Just what the handlers touch: the virtual CPU's MSRs and CPL."""
    def __init__(self, msrs):
        from ringvisor.monitors.common.vcpu import VirtualCpu
        self.vcpu = VirtualCpu(ring=1)
        self.vcpu.msr.update(msrs)


def test_sysenter_without_sysenter_cs_is_a_gp0():
    st = CpuState(cs=Segment.flat32(0x1B, True, 3), ss=Segment.flat32(0x23, False, 3),
                  gdt=TableRegister(0, 0x27))
    with pytest.raises(VirtualFault) as e:
        fast_syscall.sysenter(_Mon({}), st, None)
    assert (e.value.vector, e.value.code) == (13, 0)


def test_the_guest_sees_cpl_3_after_sysexit(test_kernels):
    m = machine(test_kernels / "sysenter.elf", "calls=1", technique="trap")
    try:
        m.run()
        assert m.engine.vcpu.cpl == 3           # it exits from ring 3
    finally:
        m.close()
