"""Which hardware really serves /dev/kvm here: VT-x, AMD-V or PVM.

Reports must say plainly what "hardware-assisted" meant for a run (DESIGN.md):
on PVM, guest CPL-3 code runs on silicon but CPL-0 and real-mode code is
emulated by the host kernel.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

MODULES = {
    "kvm_pvm": ("PVM", "PVM (kvm_pvm): no VT-x/AMD-V; guest CPL 3 runs on silicon, "
                       "CPL 0 and real mode are emulated by the host kernel"),
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
