"""MMIO under EPT. Guest-physical addresses above the guest's RAM are the
machine's devices (the MMIO bus: the local and I/O APICs, the HPET, or
nothing, as on a bare PC where such a read returns all ones). The EPT maps
none of them, so an access is an EPT violation, and the monitor emulates
the instruction, as KVM does (handle_ept_violation, then
x86_emulate_instruction with MMIO callbacks to the device model).

The emulator is the soft CPU's own interpreter: the monitor puts the
guest's state back on the CPU, runs the one instruction (decoded by the
CPU's decoder, executed by its semantics: any instruction, flags and
partial-register writes exact) with a page walk that is the monitor's EPT
except that guest-physical addresses above RAM reach the machine's MMIO
bus, then saves the guest state again. An exception the instruction raises
(a #PF on its other operand, a #GP) is injected into the guest, as KVM
injects its emulator's exceptions. The monitor's own region, the hole at
the top of RAM, stays an EPT violation: the guest's crash.
"""
from __future__ import annotations

from ringvisor.cpu.architecture import CpuFault
from ringvisor.cpu.vmx import controls as C
from ringvisor.cpu.vmx.ept import Ept
from ringvisor.cpu.vmx.exits import VmExitSignal
from ringvisor.cpu.vmx.state import load_guest, load_host, save_guest

ERROR_CODE_VECTORS = {8, 10, 11, 12, 13, 14, 17}


class DeviceView(Ept):
    """The monitor's EPT with the machine's devices seen through: a
    guest-physical address above RAM is that address on the CPU's physical
    bus (the MMIO bus). Its walk counters are its own (not the run's)."""

    def __init__(self, cpu, eptp: int, ram_size: int):
        super().__init__(cpu, eptp)
        self.ram_size = ram_size

    def translate(self, gpa: int, write: bool, lin, final: bool, count: bool = True) -> int:
        if gpa >= self.ram_size:
            return gpa
        return super().translate(gpa, write, lin, final, count)


def emulate(mon, gpa: int) -> None:
    """Execute the guest instruction at GUEST_RIP that touched `gpa` (a
    device), leaving the guest after it (or with its exception injected)."""
    cpu, v = mon.cpu, mon.vmcs
    view = DeviceView(cpu, v["EPT_POINTER"], mon.memory.size)
    saved_walk = cpu.walk
    cpu.walk, cpu.always_translate = view.walk, True
    load_guest(cpu, v)
    cpu.flush_tlb()
    cpu.halted = False
    fault = None
    try:
        cpu.step()
    except CpuFault as e:
        if not e.trap:
            cpu.eip, cpu.r[4] = cpu.cur_eip, cpu.cur_esp
        fault = e
    except VmExitSignal as sig:                 # the monitor's region, through the EPT
        cpu.eip, cpu.r[4] = cpu.cur_eip, cpu.cur_esp
        _back_to_host(mon, saved_walk)
        mon.crash(f"an instruction touching the device at guest-physical {gpa:#010x} also "
                  f"accessed guest-physical {sig.gpa:#010x}, outside the guest's RAM")
    mov_ss = cpu.shadow and fault is None
    cpu.shadow = False
    _back_to_host(mon, saved_walk)
    v["GUEST_INTERRUPTIBILITY_INFO"] = (v["GUEST_INTERRUPTIBILITY_INFO"] & ~3) | \
        (C.BLOCKING_BY_MOV_SS if mov_ss else 0)
    mon.mmio_accesses[gpa & ~0xFFF] += 1
    if fault is not None:
        code = fault.code if fault.vector in ERROR_CODE_VECTORS else None
        mon.inject_exception(fault.vector, code)


def _back_to_host(mon, saved_walk) -> None:
    cpu, v = mon.cpu, mon.vmcs
    save_guest(cpu, v)
    cpu.walk, cpu.always_translate = saved_walk, False
    cpu.flush_tlb()
    load_host(cpu, v)
