"""The hypercalls of docs/pv-abi.md section 9, one function each, and the
table that dispatches them. Every argument comes from the guest and is
checked before use; a failed check raises PvError, which the monitor turns
into -errno in EAX (and a count by reason), never into a crash.

A handler gets the monitor, the guest's state at the `int $0x82` (EIP
already after it) and the five argument registers; it returns EAX, or
None when it has set the whole state itself (HC_IRET, HC_BLOCK).
"""
from __future__ import annotations

import struct

from ringvisor.monitors.pv import abi as A
from ringvisor.monitors.pv.mmu import PvError

MAX_MMU_REQUESTS = 4096            # per call: the monitor cannot be preempted mid-batch
ARITH_DF_TF_AC = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x800 | 0x400 | 0x100 | 0x40000
IF = 0x200


def set_trap_table(mon, st, table, *_):
    entries = []
    for at in range(table, table + (A.MAX_TRAP_ENTRIES + 1) * A.TRAP_INFO_SIZE, A.TRAP_INFO_SIZE):
        vector, flags, cs, address = struct.unpack("<BBHI", mon.read_guest(at, A.TRAP_INFO_SIZE))
        if address == 0:
            break
        if len(entries) == A.MAX_TRAP_ENTRIES:
            raise PvError(A.EINVAL, "a trap table of more than 256 entries")
        if vector == A.HYPERCALL_VECTOR:
            raise PvError(A.EINVAL, "a trap-table entry for the hypercall vector")
        if cs != A.KERNEL_CODE:
            raise PvError(A.EINVAL, "a trap-table handler CS other than 0x31 (ring 1)")
        if flags & ~(A.TI_DPL_MASK | A.TI_MASK_EVENTS):
            raise PvError(A.EINVAL, "undefined trap-table flags")
        if address > A.KSEG_LIMIT:
            raise PvError(A.EINVAL, "a trap-table handler in the monitor's hole")
        entries.append((vector, flags, address))
    for vector, flags, address in entries:                # all checked: install
        mon.trap_table[vector] = (flags, address)
        mon.tables.set_gate_dpl(vector, flags & A.TI_DPL_MASK)
    return 0


def mmu_update(mon, st, reqs, count, done, *_):
    if count > MAX_MMU_REQUESTS:
        raise PvError(A.EINVAL, f"more than {MAX_MMU_REQUESTS} requests in one call")
    applied, error = 0, None
    try:
        for i in range(count):
            ptr, val = struct.unpack("<II", mon.read_guest(reqs + 8 * i, 8))
            mon.paging.update(ptr, val)
            applied += 1
    except PvError as e:
        error = e
    if done:
        mon.write_guest(done, applied.to_bytes(4, "little"))
    if error is not None:
        raise error
    return 0


def update_va_mapping(mon, st, va, val, flags, *_):
    if flags not in (A.UVM_NONE, A.UVM_INVLPG, A.UVM_FLUSH):
        raise PvError(A.EINVAL, "update_va_mapping flags other than 0, 1, 2")
    mon.paging.update(mon.paging.pte_address(mon.vcpu.cr3, va), val)
    if flags == A.UVM_INVLPG:
        mon.real.invlpg(va)
    elif flags == A.UVM_FLUSH:
        mon.real.flush_tlb()
    return 0


def pin_table(mon, st, pa, level, *_):
    mon.paging.pin(pa, level)
    mon.real.flush_tlb()           # no stale writable translation of the new table survives
    return 0


def unpin_table(mon, st, pa, *_):
    mon.paging.unpin(pa, mon.vcpu.cr3)
    return 0


def new_baseptr(mon, st, pa, *_):
    mon.vcpu.cr3 = st.cr3 = mon.paging.check_base(pa)
    mon.real.flush_tlb()
    return 0


def invlpg(mon, st, va, *_):
    mon.real.invlpg(va)
    return 0


def tlb_flush(mon, st, *_):
    mon.real.flush_tlb()
    return 0


def stack_switch(mon, st, ss, esp, *_):
    if ss != A.KERNEL_DATA:
        raise PvError(A.EINVAL, "a kernel stack segment other than 0x39")
    mon.kernel_stack = esp
    return 0


def iret(mon, st, *_):
    """Pop [EAX, EIP, CS, EFLAGS(, ESP, SS)] and resume there (section 9)."""
    eax, eip, cs, flags = struct.unpack("<IIII", mon.read_guest(st.esp, 16))
    if cs == A.KERNEL_CODE:
        esp, ss = st.esp + 16, None
    elif cs == A.USER_CODE:
        esp, ss = struct.unpack("<II", mon.read_guest(st.esp + 16, 8))
        if ss != A.USER_DATA:
            mon.crash(f"HC_IRET to ring 3 with stack segment {ss:#06x} (only 0x23)", st)
    else:
        mon.crash(f"HC_IRET to code segment {cs:#06x} (only 0x31 or 0x1b)", st)
    if eip > A.KSEG_LIMIT:
        mon.crash(f"HC_IRET to EIP {eip:#010x}, in the monitor's hole", st)
    st.eax, st.eip, st.esp = eax, eip, esp & 0xFFFFFFFF
    st.cs = mon.tables.segment(cs)
    if ss is not None:
        st.ss = mon.tables.segment(ss)
        for name in ("ds", "es", "fs", "gs"):        # as IRET to an outer ring does
            seg = getattr(st, name)
            if not seg.unusable and seg.dpl < 3:
                setattr(st, name, mon.tables.segment(0))
    st.eflags = (flags & ARITH_DF_TF_AC) | IF | 2
    mon.shared.mask(not flags & IF)
    return None


def set_callback(mon, st, cs, eip, *_):
    if cs != A.KERNEL_CODE:
        raise PvError(A.EINVAL, "an event callback CS other than 0x31")
    if eip > A.KSEG_LIMIT:
        raise PvError(A.EINVAL, "an event callback in the monitor's hole")
    mon.callback = eip
    return 0


def set_timer(mon, st, lo, hi, *_):
    if mon.timer.arm(hi << 32 | lo):
        mon.raise_event(A.EVT_TIMER)
    mon.update_time()
    return 0


def yield_(mon, st, *_):
    return 0                       # one vCPU, one guest: nobody to yield to


def block(mon, st, *_):
    mon.shared.mask(False)
    st.eax = 0
    if not mon.shared.pending:
        mon.block(st)
    return None


def console_write(mon, st, buf, length, *_):
    n = min(length, A.CONSOLE_WRITE_MAX)
    if n:
        mon.console(mon.read_guest(buf, n))
    return n


def shutdown(mon, st, status, *_):
    mon.shutdown(status & 0xFF)


def version(mon, st, *_):
    return A.ABI_VERSION


HANDLERS = {A.HC[f.__name__.rstrip("_")]: f for f in (
    set_trap_table, mmu_update, update_va_mapping, pin_table, unpin_table, new_baseptr, invlpg,
    tlb_flush, stack_switch, iret, set_callback, set_timer, yield_, block, console_write, shutdown,
    version)}
assert sorted(HANDLERS) == sorted(A.HYPERCALLS), "every hypercall of the ABI has a handler"
