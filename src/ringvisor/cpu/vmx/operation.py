"""VMLAUNCH/VMRESUME on the soft CPU: VM entry (checks, guest state, event
injection), non-root execution until a VM exit, and the exit itself (guest
state and exit information saved, host state loaded), SDM vol. 3C ch.
26-27. The monitor calls `vm_enter(cpu, vmcs, launch)` and gets a `VmExit`
back, or a `VmxInstructionError` for VMfailValid.

The soft CPU runs no host code: the monitor is the Python caller. "Host
state" is still loaded as the SDM says, so a VMCS with a bad host area fails
as it would on silicon. The engine's slice plays the host's timer: when it
ends in non-root operation with external-interrupt exiting, the exit is an
external interrupt with vector HOST_TIMER_VECTOR (Linux's local-APIC timer
vector), as on a host that is preempting its guest.

TLB (28.3.3): without VPID, every VM entry and exit flushes the linear and
combined mappings. With VPID the guest's entries are tagged by (VPID, EPT
root): they are set aside at the exit and back at the next entry with the
same tag; another tag flushes.
"""
from __future__ import annotations

from ringvisor.cpu.vmx import controls as C
from ringvisor.cpu.vmx.entry import check_controls_and_host, guest_problem
from ringvisor.cpu.vmx.ept import Ept
from ringvisor.cpu.vmx.exits import ENTRY_FAILURE, R, VmExit, VmExitSignal
from ringvisor.cpu.vmx.nonroot import NonRoot, window_pin
from ringvisor.cpu.vmx.state import load_guest, load_host, save_guest
from ringvisor.cpu.vmx.vmcs import VMERR, FIELDS, VmxInstructionError
from ringvisor.errors import GuestCrashed
from ringvisor.exits import DebugStop

HOST_TIMER_VECTOR = 0xEC
_F = FIELDS


def vm_enter(cpu, vmcs, launch: bool) -> VmExit:
    if launch and vmcs.launched:
        raise VmxInstructionError(VMERR["VMLAUNCH_NONCLEAR"])
    if not launch and not vmcs.launched:
        raise VmxInstructionError(VMERR["VMRESUME_NONLAUNCHED"])
    check_controls_and_host(vmcs)
    problem = guest_problem(vmcs)
    if problem is not None:
        return _entry_failure(cpu, vmcs, R["INVALID_GUEST_STATE"], problem)
    vmcs.launched = True
    return _run(cpu, vmcs)


def _entry_failure(cpu, vmcs, reason: int, what: str) -> VmExit:
    f = vmcs.f
    f[_F["VM_EXIT_REASON"]] = reason | ENTRY_FAILURE
    f[_F["EXIT_QUALIFICATION"]] = 0
    load_host(cpu, vmcs)
    return VmExit(reason | ENTRY_FAILURE, detail=what)


class _Tlbs:
    """The guest TLB entries kept across an exit, per tag."""
    __slots__ = ("tag", "tlb", "glob")

    def __init__(self):
        self.tag = self.tlb = self.glob = None


def _tlb_enter(cpu, tag) -> None:
    kept = getattr(cpu, "vmx_tlbs", None)
    if kept is None:
        kept = cpu.vmx_tlbs = _Tlbs()
    if tag is not None and kept.tag == tag and kept.tlb is not None:
        cpu.tlb, cpu.tlb_global = kept.tlb, kept.glob
        cpu.paging_changed()
    else:
        cpu.flush_tlb()
    kept.tag, kept.tlb, kept.glob = tag, None, None


def _tlb_exit(cpu, tag) -> None:
    kept = cpu.vmx_tlbs
    if tag is not None:
        kept.tlb, kept.glob = cpu.tlb, cpu.tlb_global
    cpu.tlb, cpu.tlb_global = [{}, {}, {}, {}], set()
    cpu.paging_changed()


def _ept_for(cpu, eptp: int) -> Ept:
    """The EPT walker for this EPT pointer (kept across entries: its
    counters are the 2-D walk's cost over the run)."""
    ept = getattr(cpu, "vmx_ept", None)
    if ept is None or ept.eptp != eptp:
        ept = cpu.vmx_ept = Ept(cpu, eptp)
    return ept


def _run(cpu, vmcs) -> VmExit:
    f = vmcs.f
    nr = NonRoot(vmcs)
    ept = _ept_for(cpu, vmcs["EPT_POINTER"]) if nr.proc2 & C.SEC_ENABLE_EPT else None
    nr.ept = ept
    nr.cpu_memory = cpu.mm
    tag = (vmcs["VPID"], vmcs["EPT_POINTER"] if ept else None) \
        if nr.proc2 & C.SEC_ENABLE_VPID else None
    # Attach non-root operation to the CPU.
    saved_intercept, saved_walk = cpu.intercept, cpu.walk
    nr.host_pin = cpu.interrupts
    cpu.interrupts = window_pin(nr, cpu)
    cpu.intercept = 0
    cpu.vmx = nr
    cpu.always_translate = ept is not None
    if ept is not None:
        cpu.walk = ept.walk
    cpu.tsc_offset += nr.tsc_offset
    load_guest(cpu, vmcs)
    _tlb_enter(cpu, tag)
    cpu.halted = f[_F["GUEST_ACTIVITY_STATE"]] == C.HLT_STATE
    cpu.shadow = bool(f[_F["GUEST_INTERRUPTIBILITY_INFO"]] & 3)
    timer = f[_F["VMX_PREEMPTION_TIMER_VALUE"]] if nr.pin & C.PIN_PREEMPTION_TIMER else None
    # Monitor trap flag (25.5.2): an exit after the first instruction retires.
    mtf = bool(nr.proc & C.CPU_MONITOR_TRAP_FLAG)
    start = cpu.instructions
    vectoring = (0, 0)
    try:
        _inject(cpu, vmcs, nr)
        while True:
            if timer is not None and cpu.instructions - start >= timer:
                raise VmExitSignal(R["PREEMPTION_TIMER"])
            budget = cpu.slice if timer is None else min(cpu.slice, timer - (cpu.instructions - start))
            if mtf:
                budget = 1 - (cpu.instructions - start)
            exit = cpu.run(budget)
            name = exit.__class__.__name__
            if mtf and cpu.instructions > start:
                raise VmExitSignal(R["MONITOR_TRAP_FLAG"])
            if name == "Shutdown":
                raise VmExitSignal(R["TRIPLE_FAULT"])
            if name in ("Interrupted", "Halt"):
                if timer is not None and cpu.instructions - start >= timer:
                    raise VmExitSignal(R["PREEMPTION_TIMER"])
                if nr.pin & C.PIN_EXTERNAL_INTERRUPT_EXITING:
                    info = C.intr_info(HOST_TIMER_VECTOR, C.TYPE_EXTERNAL) \
                        if nr.exit_controls & C.EXIT_ACK_INTERRUPT_ON_EXIT else 0
                    raise VmExitSignal(R["EXTERNAL_INTERRUPT"], intr_info=info)
                if name == "Halt":
                    # A silicon CPU would sit in HLT for ever: no event can
                    # wake the guest and nothing can take the CPU back.
                    raise GuestCrashed("the guest halted in VMX non-root operation with nothing "
                                       "to wake it and neither external-interrupt exiting nor "
                                       "the preemption timer to end the VM entry")
                continue
            raise AssertionError(f"unexpected {name} in non-root operation")
    except VmExitSignal as sig:
        signal = sig
        vectoring = getattr(sig, "vectoring", None) or (0, 0)
    except DebugStop as stop:
        signal, debug_stop = None, stop     # a debugger stopped the guest between two instructions
    finally:
        cpu.vmx = None
        cpu.interrupts = nr.host_pin
        cpu.intercept = saved_intercept
        cpu.walk = saved_walk
        cpu.always_translate = False
        cpu.tsc_offset -= nr.tsc_offset
    # The exit: guest state, exit information, host state (27.2-27.5).
    save_guest(cpu, vmcs)
    f[_F["GUEST_ACTIVITY_STATE"]] = C.HLT_STATE if cpu.halted else C.ACTIVE
    f[_F["GUEST_INTERRUPTIBILITY_INFO"]] = ((C.BLOCKING_BY_STI if cpu.flags & 0x200 else
                                             C.BLOCKING_BY_MOV_SS) if cpu.shadow else 0) | \
        (C.BLOCKING_BY_NMI if nr.nmi_blocked else 0)
    if timer is not None and nr.exit_controls & C.EXIT_SAVE_PREEMPTION_TIMER:
        f[_F["VMX_PREEMPTION_TIMER_VALUE"]] = max(0, timer - (cpu.instructions - start))
    if signal is None:
        # Not an exit the VMM sees: the guest state goes back into the VMCS
        # (the next VMRESUME goes on from it), the host's into the CPU.
        f[_F["VM_ENTRY_INTR_INFO_FIELD"]] &= ~C.INTR_VALID
        _tlb_exit(cpu, tag)
        load_host(cpu, vmcs)
        raise debug_stop
    f[_F["VM_EXIT_REASON"]] = signal.reason
    f[_F["EXIT_QUALIFICATION"]] = signal.qualification
    f[_F["GUEST_LINEAR_ADDRESS"]] = signal.gla
    f[_F["GUEST_PHYSICAL_ADDRESS"]] = signal.gpa
    f[_F["VM_EXIT_INTR_INFO"]] = signal.intr_info
    f[_F["VM_EXIT_INTR_ERROR_CODE"]] = signal.intr_error
    f[_F["IDT_VECTORING_INFO_FIELD"]], f[_F["IDT_VECTORING_ERROR_CODE"]] = vectoring
    length = getattr(signal, "length", 0)
    f[_F["VM_EXIT_INSTRUCTION_LEN"]] = length
    f[_F["VMX_INSTRUCTION_INFO"]] = signal.instruction_info
    f[_F["VM_ENTRY_INTR_INFO_FIELD"]] &= ~C.INTR_VALID
    _tlb_exit(cpu, tag)
    load_host(cpu, vmcs)
    return VmExit(signal.reason, signal.qualification, length)


def _inject(cpu, vmcs, nr) -> None:
    """26.6: deliver the event in the VM-entry interruption-information
    field through the guest's IDT, as if it happened after VM entry."""
    from ringvisor.cpu.architecture import CpuFault
    from ringvisor.cpu.semantics.interrupts import EXC, EXT, SOFT, TripleFault, exception
    info = vmcs["VM_ENTRY_INTR_INFO_FIELD"]
    if not info & C.INTR_VALID:
        return
    kind, vector = (info >> 8) & 7, info & 0xFF
    code = vmcs["VM_ENTRY_EXCEPTION_ERROR_CODE"] if info & C.INTR_ERROR_CODE_VALID else None
    cpu.halted = False
    cpu.cur_eip, cpu.cur_esp = cpu.eip, cpu.r[4]
    if kind in (C.TYPE_SW_INTERRUPT, C.TYPE_SW_EXCEPTION, C.TYPE_PRIV_SW_EXCEPTION):
        cpu.eip = (cpu.eip + vmcs["VM_ENTRY_INSTRUCTION_LEN"]) & 0xFFFFFFFF
        how = SOFT if kind != C.TYPE_PRIV_SW_EXCEPTION else EXC
    else:
        how = EXC if kind == C.TYPE_HW_EXCEPTION else EXT
    if kind == C.TYPE_NMI:
        nr.nmi_blocked = True              # until the handler's IRET (virtual NMIs)
    nr.vectoring = (info & ~0x1000, code or 0)
    try:
        exception(cpu, vector, code, how)
    except CpuFault as e:            # INT n's delivery faulted: a fault of that instruction
        nr.vectoring = None
        exit = cpu._fault(e)
        if exit is not None and exit.__class__.__name__ == "Shutdown":
            raise VmExitSignal(R["TRIPLE_FAULT"]) from None
    except TripleFault:
        raise VmExitSignal(R["TRIPLE_FAULT"]) from None
    except VmExitSignal as sig:
        sig.vectoring = nr.vectoring
        sig.trap_like = True
        cpu.eip, cpu.r[4] = cpu.cur_eip, cpu.cur_esp
        raise
    finally:
        nr.vectoring = None


# --- root-operation instructions a monitor uses on the CPU (ch. 30) -----------------------
def invept(cpu, kind: int, eptp: int = 0) -> None:
    """INVEPT single-context (1) or all-context (2): drop the combined
    mappings derived from that EPT (all of them for kind 2)."""
    if kind not in (1, 2):
        raise VmxInstructionError(VMERR["INVALID_INVEPT_INVVPID_OPERAND"])
    kept = getattr(cpu, "vmx_tlbs", None)
    if kept is not None and kept.tag is not None and (kind == 2 or kept.tag[1] == eptp):
        kept.tlb = kept.glob = None
        kept.tag = None


def invvpid(cpu, kind: int, vpid: int, linear: int = 0) -> None:
    """INVVPID individual-address (0), single-context (1), all-context (2)."""
    if kind not in (0, 1, 2) or (kind != 2 and vpid == 0):
        raise VmxInstructionError(VMERR["INVALID_INVEPT_INVVPID_OPERAND"])
    kept = getattr(cpu, "vmx_tlbs", None)
    if kept is None or kept.tag is None or (kind != 2 and kept.tag[0] != vpid):
        return
    if kind == 0 and kept.tlb is not None:
        vpn = (linear & 0xFFFFFFFF) >> 12
        for t in kept.tlb:
            t.pop(vpn, None)
        kept.glob.discard(vpn)
    else:
        kept.tlb = kept.glob = None
        kept.tag = None
