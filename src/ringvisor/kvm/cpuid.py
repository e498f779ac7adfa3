"""The CPUID a ringvisor guest sees on the kvm engine: what the host KVM
supports, with the hypervisor bit set and a vendor leaf naming ringvisor (as
every honest hypervisor does: guests may ask whom they run on)."""
from __future__ import annotations

from ringvisor.kvm import structs as S

HYPERVISOR_LEAF = 0x40000000
HYPERVISOR_VENDOR = b"ringvisorVMM"        # 12 bytes: EBX, ECX, EDX
LEAF1_ECX_HYPERVISOR = 1 << 31


def guest_cpuid(supported: list[S.kvm_cpuid_entry2]) -> list[S.kvm_cpuid_entry2]:
    entries = [e for e in supported if not (HYPERVISOR_LEAF <= e.function < HYPERVISOR_LEAF + 0x100)]
    for e in entries:
        if e.function == 1:
            e.ecx |= LEAF1_ECX_HYPERVISOR
    ebx, ecx, edx = (int.from_bytes(HYPERVISOR_VENDOR[i:i + 4], "little") for i in (0, 4, 8))
    entries.append(S.kvm_cpuid_entry2(function=HYPERVISOR_LEAF, eax=HYPERVISOR_LEAF, ebx=ebx, ecx=ecx, edx=edx))
    return entries
