"""What the real CPU sees under the PV monitor: the ABI's GDT (section 2),
the monitor's IDT whose every gate leads to a trap stub (real_tables.py),
the int $0x82 gate of DPL 1, the TSS with the monitor's ring-0 stack, and an
idle loop where the CPU waits while the guest is blocked.

Gate DPLs decide who may use `int n` (the CPU checks, the monitor needn't):
0x82 is DPL 1 (ring 1 only: from ring 3 it is #GP(0x412)); a vector the
guest's trap table opens to ring 3 gets DPL 3, to ring 1 DPL 1. Vectors
whose exceptions push an error code keep DPL 0, so an `int n` on them
arrives as #GP(n*8+2) and cannot be mistaken for the exception: the
monitor then checks the guest's DPL and delivers it as a software int.

User segments end below the hole too: ring 1 may load a DPL-3 data selector
into DS, and paging alone cannot keep ring 1 out of the monitor's
supervisor pages (32-bit Xen truncated its ring-3 segments for the same reason).
"""
from __future__ import annotations

from ringvisor.cpu_state import Segment, TableRegister
from ringvisor.monitors.common import real_tables as T
from ringvisor.monitors.common import region as R
from ringvisor.monitors.common.descriptors import (ACCESSED, CODE_EXEC_READ, DATA_READ_WRITE, TSS32_BUSY,
                                            decode, encode_gate, encode_segment)
from ringvisor.monitors.pv import abi as A

FLAT = 0xFFFFFFFF
# selector -> (base, limit, type, dpl); the TSS is added with the region's address.
GDT = {
    A.MONITOR_CODE: (0, FLAT, CODE_EXEC_READ | ACCESSED, 0),
    A.MONITOR_DATA: (0, FLAT, DATA_READ_WRITE | ACCESSED, 0),
    A.USER_CODE & ~3: (0, A.KSEG_LIMIT, CODE_EXEC_READ | ACCESSED, 3),
    A.USER_DATA & ~3: (0, A.KSEG_LIMIT, DATA_READ_WRITE | ACCESSED, 3),
    A.KERNEL_CODE & ~3: (0, A.KSEG_LIMIT, CODE_EXEC_READ | ACCESSED, 1),
    A.KERNEL_DATA & ~3: (0, A.KSEG_LIMIT, DATA_READ_WRITE | ACCESSED, 1),
}
GDT_LIMIT = 8 * 8 - 1
IDLE = R.STUBS + 256 * R.STUB_SIZE        # after the stubs, in the same page
IDLE_CODE = bytes([0xF4, 0xEB, 0xFD])     # hlt; jmp idle
SOFTWARE_ONLY_DPL0 = A.ERROR_CODE_VECTORS


class PvTables:
    def __init__(self, region: R.MonitorRegion):
        self.region = region
        T.build(region)                               # page table, stubs, IDT, TSS
        gdt = region.physical(R.GDT_KERNEL_VIEW)
        region.write_bytes(gdt, bytes(GDT_LIMIT + 1))
        for sel, (base, limit, type_, dpl) in GDT.items():
            region.write_u64(gdt + sel, encode_segment(base, limit, type_, dpl))
        region.write_u64(gdt + A.TSS_SELECTOR, encode_segment(
            region.linear(R.TSS), T.TSS_LIMIT, TSS32_BUSY, 0, s=False, db=False))
        region.write_u32(region.physical(R.TSS) + 8, A.MONITOR_DATA)     # SS0
        region.write_bytes(region.physical(IDLE), IDLE_CODE)
        self.gate_dpl = [0] * 256
        self.caches: dict[int, Segment] = {}
        for v in range(256):
            self.set_gate_dpl(v, 1 if v == A.HYPERCALL_VECTOR else 0)

    def set_gate_dpl(self, vector: int, dpl: int) -> None:
        if vector in SOFTWARE_ONLY_DPL0:
            dpl = 0
        self.gate_dpl[vector] = dpl
        self.region.write_u64(self.region.physical(R.IDT) + 8 * vector,
                              encode_gate(A.MONITOR_CODE, T.stub_address(self.region, vector), dpl=dpl))

    # --- the real CPU's registers -----------------------------------------------------
    def segment(self, selector: int) -> Segment:
        """The hidden cache of a guest selector (null for 0). The GDT never
        changes, so caches are made once; engines copy what set_state gets."""
        seg = self.caches.get(selector)
        if seg is None:
            if selector & ~3 == 0:
                seg = Segment(selector=selector, base=0, limit=0, type=0, present=False, unusable=True)
            else:
                raw = self.region.read_u64(self.region.physical(R.GDT_KERNEL_VIEW) + (selector & ~7))
                seg = decode(raw).segment(selector)
            self.caches[selector] = seg
        return seg

    def install(self, st) -> None:
        st.gdt = TableRegister(self.region.linear(R.GDT_KERNEL_VIEW), GDT_LIMIT)
        st.idt = TableRegister(self.region.linear(R.IDT), 256 * 8 - 1)
        st.tr = Segment(selector=A.TSS_SELECTOR, base=self.region.linear(R.TSS), limit=T.TSS_LIMIT,
                        type=TSS32_BUSY, s=False)
        st.ldt = Segment(selector=0, base=0, limit=0, type=2, s=False, present=False, unusable=True)
        st.cr0, st.cr4 = A.GUEST_CR0, 0

    def idle_state(self, st) -> None:
        """`st` becomes the monitor's idle loop: ring 0, IF=1, its own stack."""
        st.cs, st.ss = self.segment(A.MONITOR_CODE), self.segment(A.MONITOR_DATA)
        st.eip = self.region.linear(IDLE)
        st.esp = self.region.linear(R.STACK_TOP)
        st.eflags = 0x202

    def in_idle(self, eip: int) -> bool:
        base = self.region.linear(IDLE)
        return base <= eip <= base + len(IDLE_CODE)
