"""An application processor's real-mode start under `--paging shadow`.

A SIPI starts a vCPU in real mode at CS=vector<<8, IP=0 (machine/smp.py).
Under EPT the monitor enters it there (unrestricted guest). Without EPT,
as on first-generation VT-x, VM entry needs CR0.PE=1, so the monitor runs
the start itself, as KVM's emulate_invalid_guest_state does: the soft CPU's
own interpreter, in root operation, executes the guest's trampoline one
instruction at a time on the guest's state, until the guest has set
CR0.PE and loaded CS from its GDT (the far jump that follows MOV to CR0);
from there the vCPU runs in VMX non-root operation as any other.

Stated limits: the trampoline runs with interrupts off (EFLAGS.IF=0, as
INIT leaves it; an AP's start-up code does not enable them in real mode):
no interrupt is delivered to it, and a HLT there is the guest's crash.
Memory goes through the guest-physical view the shadow gives (identity,
the devices above RAM on the MMIO bus); the monitor's region stays out of
reach.
"""
from __future__ import annotations

from ringvisor.cpu.architecture import CpuFault
from ringvisor.cpu.core import CS
from ringvisor.cpu.vmx.state import load_host
from ringvisor.exits import Interrupted, Shutdown
from ringvisor.monitors.hw.interpret import _guest_paging_walk, _RegionHit

CR0_PE = 1


def _cs_key(seg) -> tuple:
    return seg.selector, seg.base, seg.limit, seg.type, seg.db


class RealModeStart:
    def __init__(self, mon, state):
        self.mon, self.state = mon, state.copy()
        self.cs_at_pe = None                  # CS as it was when CR0.PE was set
        self.instructions = 0                 # emulated here (mon.statistics)

    def run(self, budget: int):
        """Emulate up to `budget` instructions. None once the vCPU is in
        protected mode (the monitor has loaded the VMCS and enters it);
        Interrupted when the budget is spent; Shutdown on a triple fault."""
        from ringvisor.cpu.semantics.interrupts import EXC, TripleFault, exception
        mon = self.mon
        cpu = mon.cpu
        saved_walk = cpu.walk
        cpu.always_translate = True
        cpu.walk = _guest_paging_walk(mon.region)
        cpu.set_state(self.state)
        done, result = False, Interrupted()
        start = cpu.instructions
        try:
            while cpu.instructions - start < budget:
                try:
                    cpu.step()
                except CpuFault as e:
                    if not e.trap:
                        cpu.eip, cpu.r[4] = cpu.cur_eip, cpu.cur_esp
                    exception(cpu, e.vector, e.code, EXC)
                if cpu.halted:
                    self.state = cpu.get_state()
                    self._restore(saved_walk)
                    mon.crash("the application processor halted in its real-mode start, which the hw "
                              "monitor emulates with interrupts off (--paging shadow): use --paging ept")
                if cpu.cr0 & CR0_PE:
                    if self.cs_at_pe is None:
                        self.cs_at_pe = _cs_key(cpu.segs[CS])
                    elif _cs_key(cpu.segs[CS]) != self.cs_at_pe:
                        done = True
                        break
                else:
                    self.cs_at_pe = None
        except TripleFault:
            result = Shutdown()
        except _RegionHit as hit:
            cpu.eip, cpu.r[4] = cpu.cur_eip, cpu.cur_esp
            self.state = cpu.get_state()
            self._restore(saved_walk)
            mon.crash(f"the application processor's real-mode start accessed guest-physical "
                      f"{hit.gpa:#010x}: memory the memory map reserves for the monitor")
        finally:
            self.instructions += cpu.instructions - start
        self.state = cpu.get_state()
        self._restore(saved_walk)
        if done:
            mon.real_mode_instructions += self.instructions
            mon.set_state(self.state)             # protected mode: into the VMCS
            return None
        return result

    def _restore(self, saved_walk) -> None:
        cpu = self.mon.cpu
        cpu.walk, cpu.always_translate = saved_walk, False
        cpu.flush_tlb()
        load_host(cpu, self.mon.vmcs)
