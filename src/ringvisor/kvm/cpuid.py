"""The CPUID a ringvisor guest sees on the kvm engine: what the host KVM
supports, with the hypervisor bit set and a vendor leaf naming ringvisor (as
every honest hypervisor does: guests may ask whom they run on)."""
from __future__ import annotations

from ringvisor.kvm import structs as S

HYPERVISOR_LEAF = 0x40000000
HYPERVISOR_VENDOR = b"ringvisorVMM"        # 12 bytes: EBX, ECX, EDX
LEAF1_ECX_HYPERVISOR = 1 << 31


# Leaves whose EDX is the x2APIC ID, every subleaf (SDM Vol. 2A, CPUID 0BH/1FH).
TOPOLOGY_LEAVES = (0xB, 0x1F)


def guest_cpuid(supported: list[S.kvm_cpuid_entry2], apic_id: int = 0) -> list[S.kvm_cpuid_entry2]:
    """One vCPU's CPUID: its initial APIC ID in CPUID.1:EBX[31:24] and in
    the topology leaves, as KVM does not fill them in (vcpu id = APIC ID)."""
    entries = [S.kvm_cpuid_entry2.from_buffer_copy(e) for e in supported
               if not (HYPERVISOR_LEAF <= e.function < HYPERVISOR_LEAF + 0x100)]
    for e in entries:
        if e.function == 1:
            e.ecx |= LEAF1_ECX_HYPERVISOR
            e.ebx = (e.ebx & 0x00FFFFFF) | (apic_id & 0xFF) << 24
        elif e.function in TOPOLOGY_LEAVES:
            e.edx = apic_id
    ebx, ecx, edx = (int.from_bytes(HYPERVISOR_VENDOR[i:i + 4], "little") for i in (0, 4, 8))
    entries.append(S.kvm_cpuid_entry2(function=HYPERVISOR_LEAF, eax=HYPERVISOR_LEAF, ebx=ebx, ecx=ecx, edx=edx))
    return entries
