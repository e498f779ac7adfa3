"""The trap monitor's building blocks without running a guest: descriptor
rewriting for the real GDT views, trap stubs, the virtual CPU's flags, and
shadow paging (fills, truthful accessed/dirty bits, traced page tables)."""
from __future__ import annotations

from collections import Counter

import pytest

from ringvisor.cpu_state import CpuState
from ringvisor.machine.memory import GuestMemory
from ringvisor.monitors.common import emulate as E
from ringvisor.monitors.common import region as R
from ringvisor.monitors.common import real_tables as T
from ringvisor.monitors.common.descriptors import decode, encode_segment
from ringvisor.monitors.common.guest_mmu import A, D, GuestMmu, P, RW, US, VirtualFault
from ringvisor.monitors.common.shadow_gdt import KERNEL_VIEW, USER_VIEW, ShadowGdt
from ringvisor.monitors.common.shadow_paging import ShadowMmu
from ringvisor.monitors.common.stepper import changed_range
from ringvisor.monitors.common.vcpu import CR0_PG, CR0_WP, IF, IOPL, VirtualCpu

FLAT = 0xFFFFFFFF


def region(mb: int = 16) -> R.MonitorRegion:
    mem = GuestMemory(mb << 20)
    r = R.MonitorRegion(mem, mem.size)
    T.build(r)
    return r


@pytest.mark.parametrize("ring", [1, 3])
def test_kernel_view_deprivileges_and_cuts_at_the_hole(ring):
    gdt = ShadowGdt(region(), ring)
    kcode = decode(gdt.rewrite(encode_segment(0, FLAT, 0xB, 0), KERNEL_VIEW))
    assert kcode.dpl == ring and kcode.present and kcode.limit == 0xFFBFFFFF
    ucode = encode_segment(0, FLAT, 0xB, 3)
    assert not decode(gdt.rewrite(ucode, KERNEL_VIEW)).present      # IRET to user mode faults
    assert decode(gdt.rewrite(ucode, USER_VIEW)).present
    assert decode(gdt.rewrite(encode_segment(0, FLAT, 0x3, 0), USER_VIEW)).dpl == 0
    small = decode(gdt.rewrite(encode_segment(0x1000, 0xFFFF, 0x3, 0), KERNEL_VIEW))
    assert small.base == 0x1000 and small.limit == 0xFFFF
    assert not decode(gdt.rewrite(encode_segment(0xFFC00000, 0xFFF, 0x3, 0), KERNEL_VIEW)).present
    # 0xF0000000-0xFFBFFFFF stays the guest's: the xAPIC, I/O APIC and HPET live there.
    apic = decode(gdt.rewrite(encode_segment(0xFEE00000, 0xFFF, 0x3, 0), KERNEL_VIEW))
    assert apic.present and apic.base == 0xFEE00000 and apic.limit == 0xFFF


def test_system_descriptors_stay_out_and_the_monitor_keeps_its_own():
    r = region()
    gdt = ShadowGdt(r, 1)
    tss = encode_segment(0x5000, 103, 9, 0, s=False, db=False)
    gdt.load(bytes(8) + encode_segment(0, FLAT, 0xB, 0).to_bytes(8, "little") + tss.to_bytes(8, "little"))
    assert gdt.descriptor(KERNEL_VIEW, 0x08).dpl == 1
    assert decode(r.read_u64(gdt.bases[KERNEL_VIEW] + 0x10)).lo == 0
    mcode = gdt.descriptor(KERNEL_VIEW, T.MONITOR_CODE)
    assert mcode.code and mcode.dpl == 0 and mcode.present
    assert gdt.descriptor(USER_VIEW, T.MONITOR_TSS).type == 11


def test_stubs_name_their_vector():
    r = region()
    for v in (0, 13, 0x80, 255):
        assert T.stub_vector(r, T.stub_address(r, v) + T.HALT_OFFSET) == v
    assert T.stub_vector(r, T.stub_address(r, 1)) is None
    idt = decode(r.read_u64(r.physical(R.IDT) + 8 * 14))
    assert idt.type == 14 and idt.dpl == 0 and idt.gate_selector == T.MONITOR_CODE


def test_real_and_virtual_flags():
    v = VirtualCpu(ring=1, if_=True, iopl=3)
    assert v.real_flags(0x3202 | 0x4000) == 0x202                    # IOPL and NT stay virtual
    assert v.virtual_flags(0x2) & (IF | IOPL) == IF | IOPL
    v.if_ = False
    assert not v.real_flags(0x202) & IF                              # real IF follows virtual IF


def test_changed_range():
    a = bytes(4096)
    assert changed_range(a, a) is None
    b = bytearray(a)
    b[100], b[103] = 1, 2
    assert changed_range(a, bytes(b)) == (100, 104)


class Paging:
    """A guest page directory at 0x10000, one page table at 0x11000 for
    0-4 MiB, and the shadow MMU over them."""
    PD, PT = 0x10000, 0x11000

    def __init__(self, ring=1):
        self.r = region()
        self.mem = self.r.memory
        self.v = VirtualCpu(ring=ring, cr0=0x11 | CR0_PG | CR0_WP, cr3=self.PD)
        self.gmmu = GuestMmu(self.mem, self.v, self.r)
        self.stats = Counter()
        self.shadow = ShadowMmu(self.r, self.v, self.gmmu, ring, self.stats)
        self.mem.write_u32(self.PD, self.PT | P | RW | US)
        self.cr3 = self.shadow.activate()

    def map(self, page: int, frame: int, flags: int) -> None:
        self.mem.write_u32(self.PT + 4 * (page >> 12), frame | flags)

    def guest_pte(self, page: int) -> int:
        return self.mem.read_u32(self.PT + 4 * (page >> 12))

    def shadow_pte(self, page: int) -> int:
        return self.r.read_u32(self.shadow.lookup(page))


def test_fills_keep_accessed_and_dirty_bits_truthful():
    g = Paging()
    g.map(0x5000, 0x5000, P | RW)
    assert g.shadow.fill(0x5000, write=False, user=False) is None
    assert g.guest_pte(0x5000) & (A | D) == A                        # read: A only
    assert g.shadow_pte(0x5000) & (P | RW) == P                      # clean: read-only shadow
    assert g.shadow.fill(0x5000, write=True, user=False) is None
    assert g.guest_pte(0x5000) & (A | D) == A | D
    assert g.shadow_pte(0x5000) & (P | RW) == P | RW


def test_guest_page_tables_are_read_only_in_the_shadow():
    g = Paging()
    g.map(0x11000, 0x11000, P | RW | A | D)                          # the PT maps itself
    lift = g.shadow.fill(0x11000, write=True, user=False)
    assert lift is not None and lift[1] == 0x11000                   # a traced write: single-step it
    assert not g.shadow_pte(0x11000) & RW
    g.map(0x7000, 0x7000, P | RW | A)                                # a guest PTE write ...
    g.shadow.mirror(0x11000, 4 * 7, 4 * 8)                           # ... mirrored
    assert g.shadow_pte(0x7000) & P and g.stats["pte_writes_mirrored"] == 1


def test_user_access_to_a_supervisor_page_is_the_guests_fault():
    g = Paging()
    g.map(0x5000, 0x5000, P | RW | A)
    with pytest.raises(VirtualFault) as e:
        g.shadow.fill(0x5000, write=True, user=True)
    assert (e.value.vector, e.value.code, e.value.cr2) == (14, 7, 0x5000)


def test_ring_compression_has_two_views():
    g = Paging(ring=3)
    g.map(0x5000, 0x5000, P | RW | A | D)                            # supervisor page
    g.shadow.fill(0x5000, write=False, user=False)
    assert g.shadow_pte(0x5000) & US                                 # kernel view: CPL 3 may use it
    g.v.cpl = 3
    g.shadow.activate()
    assert g.shadow.lookup(0x5000) is None                           # user view: not there at all


def test_the_monitors_answer_the_msrs_the_soft_cpu_has():
    # IA32_BIOS_SIGN_ID (0x8B) and IA32_PLATFORM_ID (0x17), as cpu/semantics
    # answers them: Linux reads both with unchecked RDMSR on a Pentium II.
    class Mon:
        vcpu = VirtualCpu(ring=1)

    assert E.wrmsr(Mon, CpuState(ecx=0x8B, eax=0, edx=0), None) == E.NEXT
    for msr in (0x8B, 0x17):
        st = CpuState(ecx=msr, eax=0xFFFFFFFF, edx=0xFFFFFFFF)
        assert E.rdmsr(Mon, st, None) == E.NEXT and (st.edx, st.eax) == (0, 0)
    with pytest.raises(VirtualFault):
        E.wrmsr(Mon, CpuState(ecx=0x17), None)
    with pytest.raises(VirtualFault):
        E.rdmsr(Mon, CpuState(ecx=0x1A0), None)
