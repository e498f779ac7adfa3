"""The hw monitor's instruction emulator (KVM's x86_emulate_instruction):
the soft CPU's own interpreter, run in root operation on the guest's state.
The monitor uses it where silicon leaves the work to software: an
instruction touching a device (mmio.py) and a hardware task switch, which
always exits in VMX non-root operation (task.py).

`on_guest_state(mon, action)` puts the guest's state from the VMCS back on
the CPU, runs `action(cpu)` with no VMX controls in force, and saves the
state into the VMCS again. Memory goes through the guest's own paging and
then the monitor's EPT, with the guest-physical addresses above RAM seen
through to the machine's MMIO bus (the devices); under shadow paging the
guest's control registers and page tables are its own (the shadow's CR3 is
the monitor's), and after the action the shadow follows a CR3 the action
loaded. The monitor's region stays out of reach: an access there is the
guest's crash. A CPU exception the action raises rolls the guest back to
the instruction and is returned for the caller to inject, as KVM injects
its emulator's exceptions.
"""
from __future__ import annotations

from ringvisor.cpu import paging
from ringvisor.cpu.architecture import CpuFault
from ringvisor.cpu.vmx import controls as C
from ringvisor.cpu.vmx.ept import Ept
from ringvisor.cpu.vmx.exits import VmExitSignal
from ringvisor.cpu.vmx.operation import invvpid
from ringvisor.cpu.vmx.state import load_guest, load_host, save_guest

CR0_PE, CR0_PG = 1, 1 << 31


class DeviceView(Ept):
    """The monitor's EPT with the machine's devices seen through: a
    guest-physical address above RAM is that address on the CPU's physical
    bus (the MMIO bus). Its walk counters are its own, not the run's."""

    def __init__(self, cpu, eptp: int, ram_size: int):
        super().__init__(cpu, eptp)
        self.ram_size = ram_size

    def translate(self, gpa: int, write: bool, lin, final: bool, count: bool = True) -> int:
        if gpa >= self.ram_size:
            return gpa
        return super().translate(gpa, write, lin, final, count)


class _RegionHit(Exception):
    def __init__(self, gpa: int):
        self.gpa = gpa


def _guest_paging_walk(region):
    """Shadow paging: the guest's own 32-bit walk (guest-physical is the
    CPU's physical address), refusing the monitor's region."""
    def walk(cpu, lin, write, user):
        if cpu.cr0 & CR0_PG and cpu.cr0 & CR0_PE:
            base = paging.walk(cpu, lin, write, user)
        else:
            base = lin & 0xFFFFF000
            cpu.tlb[user | write << 1][lin >> 12] = base
        if region.contains(base):
            raise _RegionHit(base)
        return base
    return walk


class Outcome:
    """What the action did: `fault` (a CpuFault to inject), `triple_fault`."""
    __slots__ = ("fault", "triple_fault")

    def __init__(self):
        self.fault = None
        self.triple_fault = False


def on_guest_state(mon, action) -> Outcome:
    from ringvisor.cpu.semantics.interrupts import TripleFault
    cpu, v, shadow = mon.cpu, mon.vmcs, mon.shadow
    saved_walk = cpu.walk
    if shadow is None:
        cpu.walk = DeviceView(cpu, v["EPT_POINTER"], mon.memory.size).walk
    else:
        cpu.walk = _guest_paging_walk(mon.region)
    cpu.always_translate = True
    load_guest(cpu, v)
    cr0_owned, cr0_real = v["CR0_GUEST_HOST_MASK"], v["GUEST_CR0"]
    if shadow is None:
        # The guest's own CR0 (its NE is in the read shadow), as its instructions see it.
        cpu.cr0 = (cr0_real & ~cr0_owned) | (v["CR0_READ_SHADOW"] & cr0_owned)
        cpu.recache_all()
    else:
        # The guest's own CR0, CR3 and CR4 (the VMCS holds the shadow's).
        cpu.cr0, cpu.cr3, cpu.cr4 = shadow.guest_control_registers(cpu.cr0, cpu.cr4)
        cpu.recache_all()
    cpu.flush_tlb()
    cpu.halted = False
    before = (cpu.cr0, cpu.cr3, cpu.cr4)
    # A STI or MOV SS shadow covers the instruction emulated here and ends
    # with it; the instruction itself may start one (MOV SS from device memory).
    cpu.shadow = False
    out = Outcome()
    missed = None
    try:
        action(cpu)
    except CpuFault as e:
        if not e.trap:
            cpu.eip, cpu.r[4] = cpu.cur_eip, cpu.cur_esp
        out.fault = e
    except TripleFault:
        out.triple_fault = True
    except VmExitSignal as sig:                   # through the EPT: the monitor's region
        missed = sig.gpa
    except _RegionHit as hit:
        missed = hit.gpa
    if missed is not None:
        cpu.eip, cpu.r[4] = cpu.cur_eip, cpu.cur_esp
    blocking = (C.BLOCKING_BY_STI if cpu.flags & 0x200 else C.BLOCKING_BY_MOV_SS) \
        if cpu.shadow and out.fault is None else 0
    cpu.shadow = False
    guest_cr = (cpu.cr0, cpu.cr3, cpu.cr4)
    save_guest(cpu, v)
    if shadow is None:
        v["GUEST_CR0"] = (cpu.cr0 & ~cr0_owned) | (cr0_real & cr0_owned)
    cpu.walk, cpu.always_translate = saved_walk, False
    cpu.flush_tlb()
    load_host(cpu, v)
    v["GUEST_INTERRUPTIBILITY_INFO"] = (v["GUEST_INTERRUPTIBILITY_INFO"] & ~3) | blocking
    if shadow is not None:
        shadow.emulated(*guest_cr)
    elif guest_cr != before:
        # A task switch loaded CR3 (and set CR0.TS): the guest's tagged
        # translations go, as the switch flushes the TLB natively.
        invvpid(cpu, 1, v["VPID"])
    if missed is not None:
        mon.crash(f"the monitor emulated a guest instruction that accessed guest-physical "
                  f"{missed:#010x}: memory the memory map reserves for the monitor")
    return out


def inject_fault(mon, fault) -> None:
    """The emulated instruction's exception, delivered to the guest."""
    from ringvisor.cpu.semantics.interrupts import HAS_ERROR_CODE
    mon.inject_exception(fault.vector, fault.code if fault.vector in HAS_ERROR_CODE else None)
