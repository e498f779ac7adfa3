"""A guest for VMX tests: cpu_rig's protected-mode machine with identity
paging, a VMCS whose host area and controls pass VM entry, and `enter()`
for VMLAUNCH/VMRESUME."""
from __future__ import annotations

import struct

from cpu_rig import KCODE, KDATA, PD, TSSSEL, Rig, asm

from ringvisor.cpu.vmx import capabilities as CAP
from ringvisor.cpu.vmx import controls as C
from ringvisor.cpu.vmx.ept import identity_tables
from ringvisor.cpu.vmx.operation import vm_enter
from ringvisor.cpu.vmx.state import write_guest_state
from ringvisor.cpu.vmx.vmcs import Vmcs

CR0_GUEST = 0x80000031            # PG NE ET PE
IO_A, IO_B, MSR_BITMAP = 0x200000, 0x201000, 0x202000
EPT_FRAMES = 0x300000             # frames for EPT tables (the rig's RAM is 4 MiB)


class VmxRig(Rig):
    def __init__(self, code: str, *, paging: bool = True, cpl: int = 0, eflags: int = 2, **regs):
        super().__init__(mem_mb=4)
        self.identity_paging()
        st = self.protected(code, cpl=cpl, eflags=eflags, **regs)
        st.cr0 = CR0_GUEST if paging else 0x31
        st.cr3 = PD
        st.cr4 = CAP.CR4_VMXE
        self.vmcs = v = Vmcs()
        write_guest_state(v, st)
        v["HOST_CR0"], v["HOST_CR3"], v["HOST_CR4"] = 0x80000031, PD, CAP.CR4_VMXE
        v["HOST_CS_SELECTOR"], v["HOST_SS_SELECTOR"], v["HOST_DS_SELECTOR"] = KCODE, KDATA, KDATA
        v["HOST_ES_SELECTOR"], v["HOST_TR_SELECTOR"] = KDATA, TSSSEL
        v["HOST_RIP"], v["HOST_RSP"] = 0xDEAD0000, 0x7000
        v["CR4_GUEST_HOST_MASK"] = CAP.CR4_VMXE      # the monitor owns VMXE; the guest reads 0
        self.controls()
        self.next_frame = EPT_FRAMES

    def controls(self, pin: int = 0, proc: int = 0, proc2: int = 0, exit: int = 0, entry: int = 0):
        v = self.vmcs
        if proc2:
            proc |= C.CPU_ACTIVATE_SECONDARY
        v["PIN_BASED_VM_EXEC_CONTROL"] = CAP.adjust(CAP.IA32_VMX_TRUE_PINBASED_CTLS, pin)
        v["CPU_BASED_VM_EXEC_CONTROL"] = CAP.adjust(CAP.IA32_VMX_TRUE_PROCBASED_CTLS, proc)
        v["SECONDARY_VM_EXEC_CONTROL"] = CAP.adjust(CAP.IA32_VMX_PROCBASED_CTLS2, proc2)
        v["VM_EXIT_CONTROLS"] = CAP.adjust(CAP.IA32_VMX_TRUE_EXIT_CTLS, exit)
        v["VM_ENTRY_CONTROLS"] = CAP.adjust(CAP.IA32_VMX_TRUE_ENTRY_CTLS, entry)

    def alloc(self) -> int:
        f = self.next_frame
        self.next_frame += 0x1000
        self.write(f, bytes(0x1000))
        return f

    def ept(self, size: int = 3 << 20, holes=(), ad: bool = False) -> int:
        """Identity EPT over [0, size); returns the EPT pointer (WB, 4 levels)."""
        root = identity_tables(self.alloc, lambda a, v: self.write(a, struct.pack("<Q", v)),
                               size, holes)
        return root | 6 | 3 << 3 | (0x40 if ad else 0)

    def enter(self, launch: bool | None = None):
        if launch is None:
            launch = not self.vmcs.launched
        return vm_enter(self.cpu, self.vmcs, launch)

    def resume_after(self, exit) -> None:
        """What a monitor does for an emulated instruction: skip it."""
        self.vmcs["GUEST_RIP"] = self.vmcs["GUEST_RIP"] + exit.instruction_length


__all__ = ["VmxRig", "asm", "C", "CAP"]
