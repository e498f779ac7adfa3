"""The CPUID the guest sees under the hw monitor: the soft CPU's own
answers, with the hypervisor bit (leaf 1 ECX bit 31) and the vendor leaf
0x40000000 naming ringvisor, as on the kvm engine (kvm/cpuid.py). Every
other leaf reads as on bare hardware."""
from __future__ import annotations

from ringvisor.kvm.cpuid import HYPERVISOR_LEAF, HYPERVISOR_VENDOR, LEAF1_ECX_HYPERVISOR


def guest_cpuid(table: dict[int, tuple[int, int, int, int]], leaf: int) -> tuple[int, int, int, int]:
    """(EAX, EBX, ECX, EDX) for `leaf`, given the CPU's own table."""
    if HYPERVISOR_LEAF <= leaf < HYPERVISOR_LEAF + 0x100:
        if leaf != HYPERVISOR_LEAF:
            return 0, 0, 0, 0
        ebx, ecx, edx = (int.from_bytes(HYPERVISOR_VENDOR[i:i + 4], "little") for i in (0, 4, 8))
        return HYPERVISOR_LEAF, ebx, ecx, edx
    if leaf not in table:                       # as the CPU answers an unknown leaf
        leaf = max(k for k in table if k < 0x80000000)
    a, b, c, d = table[leaf]
    if leaf == 1:
        c |= LEAF1_ECX_HYPERVISOR
    return a, b, c, d
