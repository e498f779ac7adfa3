"""x87 errors of a guest whose CR0.NE is 0. VMX keeps the real CR0.NE at 1
(IA32_VMX_CR0_FIXED0), so an unmasked x87 error raises #MF where the
guest's own CPU, with NE=0, asserts FERR# (the PC's IRQ13) and holds the
instruction until IGNNE#. While the guest's NE is 0 the monitor takes #MF
(the exception bitmap) and emulates the instruction with the guest's own
CR0 (interpret.py): the soft CPU's x87 then asserts FERR# as natively
(`fpu_error`: IRQ13 where the platform wires it, IGNNE# otherwise) and,
once IGNNE# is asserted, completes the instruction. With NE=1 (Linux) #MF
is the guest's and causes no exit."""
from __future__ import annotations

from ringvisor.monitors.hw.interpret import inject_fault, on_guest_state

MF = 16
CR0_NE = 0x20


def follow_ne(vmcs, guest_cr0: int) -> None:
    """Exit on #MF exactly while the guest's CR0.NE is 0."""
    bitmap = vmcs["EXCEPTION_BITMAP"] & ~(1 << MF)
    vmcs["EXCEPTION_BITMAP"] = bitmap | (0 if guest_cr0 & CR0_NE else 1 << MF)


def floating_point_error(mon, exit) -> None:
    """#MF exit: the instruction emulated with NE=0 (FERR#); if that
    asserted IGNNE# (no IRQ13 wiring), once more to complete it."""
    mon.fpu_errors += 1
    for _ in range(2):
        rip = mon.vmcs["GUEST_RIP"]
        out = on_guest_state(mon, lambda cpu: cpu.step())
        if out.fault is not None:
            inject_fault(mon, out.fault)
            return
        if mon.vmcs["GUEST_RIP"] != rip or not mon.cpu.fpu.ignne:
            return
