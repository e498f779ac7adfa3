"""MSRs of the Pentium II the soft CPU models: the ones it has answer, the
others #GP (SDM vol. 4)."""
import pytest

from ringvisor.exits import Fault, Halt
from cpu_rig import Rig, needs_as

pytestmark = needs_as


def test_bios_sign_id_reads_no_microcode_update_after_cpuid():
    # Linux's intel_get_microcode_revision(): WRMSR 0x8B with 0, CPUID.1,
    # RDMSR 0x8B; revision 0 (bits 63:32) means no update is loaded. Both
    # accesses exist on silicon, so neither may #GP (Linux warned
    # "unchecked MSR access error: WRMSR to 0x8b" when they did).
    rig = Rig()
    rig.protected("mov ecx, 0x8b\nxor eax, eax\nxor edx, edx\nwrmsr\n"
                  "mov eax, 1\ncpuid\n"
                  "mov ecx, 0x8b\nmov eax, 0xffffffff\nmov edx, eax\nrdmsr\nhlt")
    rig.intercept(13)
    assert isinstance(rig.run(), Halt)
    assert (rig.cpu.r[2], rig.cpu.r[0]) == (0, 0)


def test_platform_id_reads_platform_0_and_is_read_only():
    # Linux's microcode driver: pf = 1 << ((edx >> 18) & 7), "pf=0x1".
    rig = Rig()
    rig.protected("mov ecx, 0x17\nmov eax, 0xffffffff\nmov edx, eax\nrdmsr\nhlt")
    rig.intercept(13)
    assert isinstance(rig.run(), Halt) and (rig.cpu.r[2], rig.cpu.r[0]) == (0, 0)
    rig = Rig()
    rig.protected("mov ecx, 0x17\nxor eax, eax\nxor edx, edx\nwrmsr\nhlt")
    rig.intercept(13)
    e = rig.run()
    assert isinstance(e, Fault) and e.vector == 13


@pytest.mark.parametrize("msr", [0x1A0, 0xC0000080])     # MISC_ENABLE (Pentium 4 on), EFER
def test_msrs_this_cpu_lacks_are_gp(msr):
    rig = Rig()
    rig.protected(f"mov ecx, {msr:#x}\nrdmsr\nhlt")
    rig.intercept(13)
    e = rig.run()
    assert isinstance(e, Fault) and e.vector == 13 and e.error_code == 0
