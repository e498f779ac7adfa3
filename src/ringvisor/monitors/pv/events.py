"""Into the guest: the shared_info page (the virtual interrupt flag as
`evt_mask`, pending events, cr2, time) and the frames the monitor pushes on
the guest kernel's stack to bounce an exception or make an event upcall
(docs/pv-abi.md sections 5, 6, 8).

A bounce is what the CPU would do for an interrupt gate to ring 1: from
ring 3, switch to the stack of HC_STACK_SWITCH and push SS and ESP; then
EFLAGS (IF = events were unmasked), CS, EIP and, for exceptions that have
one, the error code. A frame that cannot be pushed, or no handler, is a
guest crash (the ABI's "as if HC_SHUTDOWN(255)"): Undeliverable.
"""
from __future__ import annotations

from ringvisor.monitors.common.guest_mmu import ReservedAccess, VirtualFault
from ringvisor.monitors.pv import abi as A

IF, TF, NT, RF, VM, IOPL = 0x200, 0x100, 0x4000, 0x10000, 0x20000, 0x3000


class Undeliverable(Exception):
    """The guest cannot take this event: it has crashed (message says why)."""


class SharedInfo:
    def __init__(self, memory, address: int):
        self.mm, self.base = memory.mmap, address

    def _get(self, field: str) -> int:
        off, n = A.SHARED_INFO[field]
        a = self.base + off
        return int.from_bytes(self.mm[a:a + n], "little")

    def _set(self, field: str, value: int) -> None:
        off, n = A.SHARED_INFO[field]
        a = self.base + off
        self.mm[a:a + n] = (value & ((1 << (8 * n)) - 1)).to_bytes(n, "little")

    @property
    def masked(self) -> bool:
        return self.mm[self.base] != 0

    def mask(self, masked: bool) -> None:
        self.mm[self.base] = int(masked)

    @property
    def pending(self) -> int:
        return self._get("evt_pending")

    def raise_event(self, bit: int) -> None:
        self._set("evt_pending", self.pending | 1 << bit)   # the guest is stopped: as good as locked

    def deliverable(self) -> bool:
        return not self.masked and self.pending != 0

    def set_cr2(self, address: int) -> None:
        self._set("cr2", address)

    def set_time(self, system_ns: int, tsc: int, tsc_khz: int) -> None:
        """Seqlock: odd version while the fields change."""
        v = self._get("time_version") & ~1
        self._set("time_version", v + 1)
        self._set("system_time_ns", system_ns)
        self._set("tsc_timestamp", tsc)
        self._set("tsc_khz", tsc_khz)
        self._set("time_version", v + 2)


def eflags_image(real: int, shared: SharedInfo) -> int:
    """EFLAGS as the guest's handler sees them pushed: IF = events unmasked, IOPL 0."""
    return (real & ~(IF | IOPL | NT | RF | VM)) | (0 if shared.masked else IF) | 2


def bounce(mon, st, handler: int, code: int | None, mask_events: bool, what: str) -> None:
    """Push the frame on the guest kernel's stack and enter `handler` (CS 0x31)."""
    from_user = st.cs.selector & 3 == 3
    frame = [eflags_image(st.eflags, mon.shared), st.cs.selector, st.eip]
    if from_user:
        if mon.kernel_stack is None:
            raise Undeliverable(f"{what} from ring 3 before the guest set a kernel stack "
                                "(HC_STACK_SWITCH)")
        frame = [st.ss.selector, st.esp] + frame
        esp = mon.kernel_stack
    else:
        esp = st.esp
    if code is not None:
        frame.append(code)
    new_esp = esp - 4 * len(frame)
    if new_esp < 0 or esp > A.HOLE:
        raise Undeliverable(f"{what}: the guest's kernel stack (ESP={esp:#010x}) cannot hold the frame")
    data = b"".join((x & 0xFFFFFFFF).to_bytes(4, "little") for x in reversed(frame))
    try:
        mon.gmmu.write(new_esp, data, user=False, what="the guest's kernel stack")
    except VirtualFault as f:
        raise Undeliverable(f"{what}: pushing the frame at {new_esp:#010x} faulted "
                            f"(#PF at {f.cr2:#010x})") from None
    except ReservedAccess as r:
        raise Undeliverable(f"{what}: {r}") from None
    if mask_events:
        mon.shared.mask(True)
    st.cs = mon.tables.segment(A.KERNEL_CODE)
    if from_user:
        st.ss = mon.tables.segment(A.KERNEL_DATA)
    st.esp, st.eip = new_esp, handler
    st.eflags = (st.eflags & ~(TF | NT | RF | VM | IOPL)) | IF | 2
