"""Guest accesses to device memory under trap and bt: the xAPIC, the I/O
APIC, the HPET, anything the machine maps beyond RAM.

The shadow page tables never map a device page (ShadowMmu.trap_mmio), as a
monitor on silicon could not: the guest's device is not at the host's
physical address. So every access #PFs into the monitor, which

* emulates a plain MOV load or store (88/89/8A/8B, C6/C7, A0-A3: what
  kernels use for APIC registers) right in the #PF handler: the value goes
  to or comes from the device on the machine's MMIO bus, EIP moves on;
* lets any other instruction (an XCHG, a MOVS, a read-modify-write, an
  access that crosses the page, or one the guest single-steps itself) run
  alone with the device page mapped for that one instruction (the stepper),
  so the real CPU's own access reaches the device.

Segment and paging checks were the real CPU's (the #PF came after them;
the guest's walk in ShadowMmu.fill checked the guest's permissions).
"""
from __future__ import annotations

from ringvisor.monitors.common.operands import effective, linear, reg, set_reg
from ringvisor.monitors.common.shadow_paging import DeviceAccess, PoolExhausted
from ringvisor.monitors.common.vcpu import TF

# opcode -> (direction, width: 1 or None for the operand size, the register operand)
LOAD, STORE, STORE_IMM = "load", "store", "store immediate"
PLAIN_MOVES = {
    "88": (STORE, 1, "reg"), "89": (STORE, None, "reg"),
    "8A": (LOAD, 1, "reg"), "8B": (LOAD, None, "reg"),
    "C6 /0": (STORE_IMM, 1, None), "C7 /0": (STORE_IMM, None, None),
    "A0": (LOAD, 1, "acc"), "A1": (LOAD, None, "acc"),
    "A2": (STORE, 1, "acc"), "A3": (STORE, None, "acc"),
}
MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}


def vcpu_lapic(machine):
    """The local APIC of the machine's one CPU (the pc machine), or None."""
    pc = getattr(getattr(machine, "platform", None), "pc", None)
    return pc.lapics[0] if pc is not None else None


def trapped(mon, st, access: DeviceAccess) -> None:
    """The monitor's #PF path found a device access."""
    mon.same_fault = (None, 0)            # progress, even when polled from one instruction
    try:
        handle(mon, st, access)
    except PoolExhausted:                 # no frame to link the device page's table: retry
        mon.shadow_reset()


def handle(mon, st, access: DeviceAccess) -> None:
    """The #PF at `access` reached device memory: emulate or step it; the
    caller resumes the guest."""
    ins = mon.fetch_decode(st)
    done = not mon.stepper.active and not st.eflags & TF and _emulate_move(mon, st, ins, access)
    if done:
        mon.stats["mmio_emulated"] += 1
    else:
        pte_addr, entry = mon.shadow.device_pte(access.lin)
        mon.stepper.map_once(pte_addr, entry)
        mon.stats["mmio_steps"] += 1
    region = mon.machine.mmio.find(access.phys)
    mon.device_accesses[region.name if region is not None else "(no device)"] += 1


def _emulate_move(mon, st, ins, access: DeviceAccess) -> bool:
    """Perform a plain MOV whose memory operand lies in the faulting page;
    False when the instruction is anything else."""
    if ins.row is None or ins.ud or not ins.mem:
        return False
    form = PLAIN_MOVES.get(ins.row.opcode)
    if form is None:
        return False
    direction, width, operand = form
    width = width or ins.osz
    seg, off = effective(ins, st)
    lin = linear(st, seg, off, width)
    if lin >> 12 != access.lin >> 12 or (lin + width - 1) >> 12 != lin >> 12:
        return False                              # crosses into another page: the real CPU does it
    phys = (access.phys & ~0xFFF) | (lin & 0xFFF)
    register = 0 if operand == "acc" else ins.reg
    if direction == LOAD:
        set_reg(st, register, width, mon.machine.mmio.read(phys, width) & MASK[width])
    else:
        value = ins.imm if direction == STORE_IMM else reg(st, register, width)
        mon.machine.mmio.write(phys, width, value & MASK[width])
    st.eip = (st.eip + ins.length) & (0xFFFFFFFF if st.cs.db else 0xFFFF)
    return True
