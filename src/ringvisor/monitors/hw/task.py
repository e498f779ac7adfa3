"""Hardware task switches under hw. In VMX non-root operation every task
switch exits (SDM 25.4.2): a far JMP, CALL or IRET (NT=1) to another task,
or an event delivered through a task gate, such as Linux's double-fault
task. Silicon leaves the switch to the monitor, as KVM's handle_task_switch
hands it to its emulator; here the emulator is the soft CPU's own
(interpret.py), whose task-switch semantics (cpu/semantics/task.py) then run
in root operation on the guest's state: the outgoing TSS saved, busy bits
and the back link, CR0.TS, the incoming task's registers, CR3, LDT and
segments, with their faults (#TS, #NP, #GP) injected into the guest.

An event that was being delivered (the IDT-vectoring information of the
exit) is delivered again by the emulator through its gate, and so is not
re-injected at the next entry; without one, the instruction that switched
is executed again.
"""
from __future__ import annotations

from ringvisor.cpu.vmx import controls as C
from ringvisor.exits import Shutdown
from ringvisor.monitors.hw.interpret import inject_fault, on_guest_state

SOFTWARE_EVENTS = (C.TYPE_SW_INTERRUPT, C.TYPE_SW_EXCEPTION)


def task_switch(mon, exit):
    v = mon.vmcs
    vectoring = v["IDT_VECTORING_INFO_FIELD"]
    mon.stats_task_switches[exit.qualification >> 30] += 1
    if vectoring & C.INTR_VALID:
        action = _deliver(vectoring, v["IDT_VECTORING_ERROR_CODE"], v["VM_EXIT_INSTRUCTION_LEN"])
        mon.vectoring_consumed = True
    else:
        action = _again
    out = on_guest_state(mon, action)
    if out.triple_fault:
        return Shutdown()
    if out.fault is not None:
        inject_fault(mon, out.fault)
    return None


def _again(cpu) -> None:
    cpu.step()


def _deliver(info: int, error_code: int, length: int):
    from ringvisor.cpu.semantics.interrupts import EXC, EXT, SOFT, exception
    kind, vector = (info >> 8) & 7, info & 0xFF
    code = error_code if info & C.INTR_ERROR_CODE_VALID else None

    def deliver(cpu) -> None:
        cpu.cur_eip, cpu.cur_esp = cpu.eip, cpu.r[4]
        if kind in SOFTWARE_EVENTS or kind == C.TYPE_PRIV_SW_EXCEPTION:
            cpu.eip = (cpu.eip + length) & 0xFFFFFFFF
        how = SOFT if kind in SOFTWARE_EVENTS else EXC if kind in (
            C.TYPE_HW_EXCEPTION, C.TYPE_PRIV_SW_EXCEPTION) else EXT
        exception(cpu, vector, code, how)
    return deliver
