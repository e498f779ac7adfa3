"""Which hardware really serves /dev/kvm here: VT-x, AMD-V or PVM.

Reports must say plainly what "hardware-assisted" meant for a run (DESIGN.md):
on PVM, a 32-bit guest without long mode is executed instruction by
instruction by the host kernel's emulator, at every CPL (measured: KVM's
`insn_emulation` counter equals the guest's instruction count at CPL 3 as
at CPL 0; bench/mips.py). PVM runs guest user code on silicon only for
64-bit guests in long mode, which is what it was built for.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

MODULES = {
    "kvm_pvm": ("PVM", "PVM (kvm_pvm): no VT-x/AMD-V; 32-bit guest code is emulated "
                       "by the host kernel at every CPL"),
    "kvm_intel": ("VT-x", "Intel VT-x (kvm_intel)"),
    "kvm_amd": ("AMD-V", "AMD-V/SVM (kvm_amd)"),
}


@dataclass(frozen=True)
class Backend:
    name: str          # "PVM", "VT-x", "AMD-V" or "unknown"
    description: str

    @property
    def emulates_ring0(self) -> bool:
        return self.name == "PVM"


def detect(sys_module: str = "/sys/module") -> Backend:
    for module, (name, description) in MODULES.items():
        if os.path.isdir(os.path.join(sys_module, module)):
            return Backend(name, description)
    return Backend("unknown", "KVM (no kvm_pvm, kvm_intel or kvm_amd module visible)")
