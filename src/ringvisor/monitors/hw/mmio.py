"""MMIO under EPT. Guest-physical addresses above the guest's RAM are the
machine's devices (the MMIO bus: the local and I/O APICs, the HPET, or
nothing, as on a bare PC where such a read returns all ones). The EPT maps
none of them, so an access is an EPT violation, and the monitor emulates
the instruction, as KVM does (handle_ept_violation, then
x86_emulate_instruction with MMIO callbacks to the device model).

The emulator is the soft CPU's own interpreter (interpret.py): the one
instruction is decoded by the CPU's decoder and executed by its semantics,
so every instruction form (MOV, MOVZX, XCHG, OR to a register, REP MOVS)
behaves exactly as natively, with the device's reads and writes on the
machine's MMIO bus. Its exception (a #PF on its other operand) is injected.

Under `--paging shadow` there is nothing to emulate: the shadow page
tables map a device's guest-physical address as it is, and the CPU's
physical access reaches the MMIO bus without an exit (as under trap and bt).
"""
from __future__ import annotations

from ringvisor.monitors.hw.interpret import inject_fault, on_guest_state


def emulate(mon, gpa: int) -> None:
    """Execute the guest instruction at GUEST_RIP that touched `gpa` (a
    device), leaving the guest after it (or with its exception injected)."""
    out = on_guest_state(mon, lambda cpu: cpu.step())
    mon.mmio_accesses[gpa & ~0xFFF] += 1
    if out.fault is not None:
        inject_fault(mon, out.fault)
