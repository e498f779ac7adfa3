"""The hw monitor's VM-exit handlers, by basic exit reason (SDM appendix
C), as KVM's kvm_vmx_exit_handlers: each returns None to re-enter the
guest, or the exit the machine must see (Halt, Shutdown, Interrupted)."""
from __future__ import annotations

from ringvisor.cpu.vmx import controls as C
from ringvisor.cpu.vmx.exits import EPT_GLA_TRANSLATED, EPT_GLA_VALID, R, decode_cr, decode_io
from ringvisor.devices.lapic_interface import guest_read_msr, guest_write_msr
from ringvisor.exits import Halt, Interrupted, Paused, Shutdown
from ringvisor.cpu.vmx.operation import invvpid
from ringvisor.monitors.hw import fpu, hypercalls, mmio, vapic
from ringvisor.monitors.hw.task import task_switch
from ringvisor.monitors.hw.cpuid import guest_cpuid
from ringvisor.monitors.hw.setup import CR0_NE, CR0_PE, CR0_PG, MSR_TSC

GP, UD = 13, 6
_SIZE_MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}


def cpuid(mon, exit):
    r = mon.cpu.r
    leaf = r[0]
    a, b, c, d = guest_cpuid(mon.cpu.cpuid, leaf)
    if mon.apic is not None and leaf == 1:
        b, c, d = vapic.cpuid_leaf1(mon, b, c, d)
    r[0], r[3], r[1], r[2] = a, b, c, d
    mon.skip(exit)


def hlt(mon, exit):
    mon.skip(exit)
    if mon._can_wake():
        return None                             # an interrupt is already waiting: no halt
    return Halt()


def pause(mon, exit):
    """The guest spins (PAUSE exiting, set with several vCPUs): end this
    vCPU's turn so the one holding the lock runs."""
    mon.skip(exit)
    mon.pause_count += 1
    return Paused()


def io(mon, exit):
    q = decode_io(exit.qualification)
    port, size, r = q["port"], q["size"], mon.cpu.r
    mon.io_ports[port] += 1
    if q["string"]:
        _string_io(mon, exit, q)
    elif q["in"]:
        mask = _SIZE_MASK[size]
        r[0] = (r[0] & ~mask) | (mon.ports.read(port, size) & mask)
    else:
        # The guest resumes after the OUT even if the device ends the run (debug-exit).
        mon.skip(exit)
        mon.ports.write(port, size, r[0] & _SIZE_MASK[size])
        return None
    mon.skip(exit)
    return None


def _string_io(mon, exit, q):
    """INS/OUTS (with REP): the monitor moves the data between the port
    and guest memory, as KVM's emulator does."""
    r, v = mon.cpu.r, mon.vmcs
    size = q["size"]
    asz = 4 if v["GUEST_CS_AR_BYTES"] & 0x4000 else 2
    amask = 0xFFFFFFFF if asz == 4 else 0xFFFF
    count = (r[1] & amask) if q["rep"] else 1
    step = -size if v["GUEST_RFLAGS"] & 0x400 else size
    linear = v["GUEST_LINEAR_ADDRESS"]
    index = 7 if q["in"] else 6
    for _ in range(count):
        if q["in"]:
            mon.write_linear(linear, mon.ports.read(q["port"], size).to_bytes(size, "little"))
        else:
            mon.ports.write(q["port"], size, int.from_bytes(mon.read_linear(linear, size), "little"))
        linear = (linear + step) & 0xFFFFFFFF
        r[index] = (r[index] & ~amask) | ((r[index] + step) & amask)
    if q["rep"]:
        r[1] &= ~amask


def cr_access(mon, exit):
    """Under EPT only the bits the monitor owns exit: CR0.NE (VMX keeps it
    set; the guest's value lives in the read shadow) and CR4.VMXE (this
    CPU shows the guest no VMX: setting it is a #GP)."""
    if mon.shadow is not None:
        return mon.shadow.cr_access(exit)
    q = decode_cr(exit.qualification)
    v, r = mon.vmcs, mon.cpu.r
    if q["access"] == "mov to" and q["cr"] == 0:
        value = r[q["gpr"]] if q["gpr"] != 4 else v["GUEST_RSP"]
        if value & CR0_PG and not value & CR0_PE:
            mon.inject_exception(GP, 0)
            return None
        v["CR0_READ_SHADOW"] = value & CR0_NE
        v["GUEST_CR0"] = (value | CR0_NE | 0x10) & 0xE005003F
        fpu.follow_ne(v, value)
        # MOV to CR0 flushes the guest's TLB (emulated here: its tagged entries).
        invvpid(mon.cpu, 1, v["VPID"])
    elif q["access"] == "mov to" and q["cr"] == 4:
        mon.inject_exception(GP, 0)
        return None
    else:
        mon.crash(f"unexpected CR access exit: {q}")
    mon.skip(exit)
    return None


def msr_read(mon, exit):
    """Only the APIC's MSRs exit on a read (the MSR bitmap)."""
    r = mon.cpu.r
    value = guest_read_msr(mon.apic, r[1]) if mon.apic is not None and vapic.is_apic_msr(r[1]) else None
    if value is None:
        mon.inject_exception(GP, 0)
        return None
    r[0], r[2] = value & 0xFFFFFFFF, (value >> 32) & 0xFFFFFFFF
    mon.skip(exit)
    return None


def msr_write(mon, exit):
    r = mon.cpu.r
    if mon.apic is not None and vapic.is_apic_msr(r[1]):
        if guest_write_msr(mon.apic, r[1], r[2] << 32 | r[0]):
            mon.skip(exit)
        else:
            mon.inject_exception(GP, 0)
    elif r[1] == MSR_TSC:
        # The guest sets its TSC: the TSC offset makes it so (guest TSC = host TSC + offset).
        value = r[2] << 32 | r[0]
        mon.vmcs["TSC_OFFSET"] = (value - mon.cpu.tsc()) & 0xFFFFFFFFFFFFFFFF
        mon.vmcs["CPU_BASED_VM_EXEC_CONTROL"] |= C.CPU_USE_TSC_OFFSETTING
        mon.skip(exit)
    else:
        mon.inject_exception(GP, 0)


def vmcall(mon, exit):
    mon.skip(exit)
    hypercalls.dispatch(mon)


def interrupt_window(mon, exit):
    mon.vmcs["CPU_BASED_VM_EXEC_CONTROL"] &= ~C.CPU_INTERRUPT_WINDOW_EXITING


def nmi_window(mon, exit):
    """The guest's NMI handler IRETed: the pending NMI goes in at this entry."""
    mon.vmcs["CPU_BASED_VM_EXEC_CONTROL"] &= ~C.CPU_NMI_WINDOW_EXITING


def external_interrupt(mon, exit):
    return None                                 # the host's; nothing for the guest


def preemption_timer(mon, exit):
    return Interrupted()                        # the machine's slice is over


def triple_fault(mon, exit):
    return Shutdown()


def ept_violation(mon, exit):
    """Above RAM: a device (MMIO), emulated. Elsewhere (the monitor's
    region, which the EPT leaves unmapped) and for what cannot be one
    instruction's data access (a page table or an IDT in device memory):
    the guest's crash."""
    v = mon.vmcs
    gpa, gla = v["GUEST_PHYSICAL_ADDRESS"], v["GUEST_LINEAR_ADDRESS"]
    q = exit.qualification
    data_access = not q & EPT_GLA_VALID or q & EPT_GLA_TRANSLATED
    if gpa >= mon.memory.size and data_access and not v["IDT_VECTORING_INFO_FIELD"] & C.INTR_VALID:
        mmio.emulate(mon, gpa)
        return None
    access = "write" if q & 2 else "fetch" if q & 4 else "read"
    where = f" (linear {gla:#010x})" if q & EPT_GLA_VALID else ""
    if gpa >= mon.memory.size:
        what = "a guest page-table entry" if not data_access else "delivering an event"
        mon.crash(f"EPT violation: {access} of guest-physical {gpa:#010x}{where}, device memory, "
                  f"for {what}: the hw monitor emulates only instructions' data accesses there")
    mon.crash(f"EPT violation: {access} of guest-physical {gpa:#010x}{where}, outside the "
              f"guest's {mon.region.phys >> 20} MiB of RAM")


def invalid_guest_state(mon, exit):
    mon.crash(f"VM entry failed: invalid guest state ({exit.detail})")


def exception(mon, exit):
    info = mon.vmcs["VM_EXIT_INTR_INFO"]
    if info & 0xFF == 14 and mon.shadow is not None:
        return mon.shadow.page_fault(exit)
    if info & 0xFF == fpu.MF:
        return fpu.floating_point_error(mon, exit)
    return unexpected(mon, exit)


def invlpg(mon, exit):
    if mon.shadow is None:
        return unexpected(mon, exit)
    return mon.shadow.invlpg(exit)


def monitor_trap(mon, exit):
    if mon.shadow is None or mon.shadow.step is None:
        return unexpected(mon, exit)
    return mon.shadow.stepped(exit)


def vmx_instruction(mon, exit):
    """No nested VMX: the guest's CPU has no VMX (CPUID says so), so its
    VMX instructions are #UD, as KVM answers them with nesting off."""
    mon.inject_exception(6)


def unexpected(mon, exit):
    mon.crash(f"unexpected VM exit {exit.name} (reason {exit.reason:#x}, qualification "
              f"{exit.qualification:#x})")


HANDLERS = {
    R["CPUID"]: cpuid, R["HLT"]: hlt, R["PAUSE"]: pause, R["IO_INSTRUCTION"]: io, R["CR_ACCESS"]: cr_access,
    R["MSR_READ"]: msr_read, R["MSR_WRITE"]: msr_write, R["NMI_WINDOW"]: nmi_window, R["VMCALL"]: vmcall, R["INTERRUPT_WINDOW"]: interrupt_window,
    R["EXTERNAL_INTERRUPT"]: external_interrupt, R["PREEMPTION_TIMER"]: preemption_timer,
    R["TRIPLE_FAULT"]: triple_fault, R["EPT_VIOLATION"]: ept_violation,
    R["INVALID_GUEST_STATE"]: invalid_guest_state, R["TASK_SWITCH"]: task_switch,
    R["EXCEPTION_NMI"]: exception, R["INVLPG"]: invlpg, R["MONITOR_TRAP_FLAG"]: monitor_trap,
    **{R[n]: vmx_instruction for n in ("VMCLEAR", "VMLAUNCH", "VMPTRLD", "VMPTRST", "VMREAD",
                                       "VMRESUME", "VMWRITE", "VMXOFF", "VMXON")},
}


def describe(mon, exit) -> str:
    """The qualification decoded, for --trace."""
    reason = exit.basic
    if reason == R["IO_INSTRUCTION"]:
        q = decode_io(exit.qualification)
        return f"{'in' if q['in'] else 'out'} port {q['port']:#06x} size {q['size']}" + \
            (" string" if q["string"] else "") + (" rep" if q["rep"] else "")
    if reason == R["CR_ACCESS"]:
        q = decode_cr(exit.qualification)
        return f"{q['access']} cr{q['cr']}"
    if reason == R["EPT_VIOLATION"]:
        return f"gpa {mon.vmcs['GUEST_PHYSICAL_ADDRESS']:#010x}"
    if reason == R["EXCEPTION_NMI"]:
        info = mon.vmcs["VM_EXIT_INTR_INFO"]
        text = f"vector {info & 0xFF:#x}"
        return text + (f" cr2 {exit.qualification:#010x}" if info & 0xFF == 14 else "")
    if reason == R["INVLPG"]:
        return f"linear {exit.qualification:#010x}"
    if reason == R["CPUID"]:
        return f"leaf {mon.cpu.r[0]:#x}"
    if reason == R["VMCALL"]:
        return f"hypercall {hypercalls.NAMES.get(mon.cpu.r[0], hex(mon.cpu.r[0]))}"
    return ""
