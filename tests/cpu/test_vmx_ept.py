"""EPT (SDM 28.3): the 2-D walk behind the TLB, violations and their
qualification (table 27-7), misconfigurations, accessed/dirty flags, and the
VPID rules for the soft TLB (28.3.3)."""
from __future__ import annotations

import struct

from cpu_rig import CODE, PD, needs_as
from vmx_rig import C, VmxRig

from ringvisor.cpu.vmx.operation import invvpid

pytestmark = needs_as
EPT = C.SEC_ENABLE_EPT


def _ept_rig(code: str, holes=(), ad=False, **kw) -> VmxRig:
    rig = VmxRig(code, **kw)
    rig.vmcs["EPT_POINTER"] = rig.ept(holes=holes, ad=ad)
    rig.controls(proc2=EPT | C.SEC_UNRESTRICTED_GUEST)
    return rig


def test_guest_runs_on_identity_ept():
    rig = _ept_rig("mov eax, [0x200000]\nmov [0x201000], eax\ncpuid")
    rig.write(0x200000, struct.pack("<I", 0xCAFE))
    exit = rig.enter()
    assert exit.reason == 10 and rig.mem.read_u32(0x201000) == 0xCAFE


def test_ept_walk_counts_references_per_miss():
    from ringvisor.cpu.vmx import operation
    seen = {}
    real = operation.Ept

    class Counting(real):
        def __init__(self, *a):
            super().__init__(*a)
            seen["ept"] = self
    operation.Ept = Counting
    try:
        rig = _ept_rig("mov eax, [0x200000]\ncpuid")
        rig.enter()
    finally:
        operation.Ept = real
    ept = seen["ept"]
    # Each miss reads the guest's PDE and PTE, each through the EPT levels,
    # and the final page through them again. The code page and the guest's
    # tables lie in the first 2 MiB, one 2 MiB EPT page (3 levels): 3 x 3 +
    # 2 = 11; 0x200000 lies where the EPT maps 4 KiB pages (4 levels): its
    # guest entries take 3 + 1 each, the page 4 more: 12.
    assert ept.misses == 2 and ept.refs == 11 + 12


def test_guest_physical_access_outside_the_ept_is_a_violation():
    rig = _ept_rig("mov eax, [0x280010]", holes=[(0x280000, 0x281000)])
    exit = rig.enter()
    assert exit.reason == 48
    # read, nothing permitted, guest-linear valid, access to the translated address
    assert exit.qualification == 1 | 1 << 7 | 1 << 8
    assert rig.vmcs["GUEST_PHYSICAL_ADDRESS"] == 0x280010
    assert rig.vmcs["GUEST_LINEAR_ADDRESS"] == 0x280010
    assert rig.vmcs["GUEST_RIP"] == CODE                  # the instruction restarts after the fix


def test_violation_on_a_guest_paging_structure_has_bit_8_clear():
    # The page table mapping 0..4 MiB lives at PD + 0x1000: take it out of the EPT.
    rig = _ept_rig("mov eax, [0x123000]", holes=[(PD + 0x1000, PD + 0x2000)])
    exit = rig.enter()
    assert exit.reason == 48 and exit.qualification & (1 << 7 | 1 << 8) == 1 << 7
    # The first access is the fetch at CODE: its PTE is the guest-physical address.
    assert rig.vmcs["GUEST_PHYSICAL_ADDRESS"] == PD + 0x1000 + 4 * (CODE >> 12)
    assert rig.vmcs["GUEST_LINEAR_ADDRESS"] == CODE


def test_write_to_a_read_only_ept_page():
    rig = _ept_rig("mov dword ptr [0x200000], 1")
    root = rig.vmcs["EPT_POINTER"] & ~0xFFF
    # Find the leaf for 0x200000 (a 2 MiB page in the identity tables) and drop W.
    pdpt = rig.mem.read_u32(root) & ~0xFFF
    pd = rig.mem.read_u32(pdpt) & ~0xFFF
    e = struct.unpack("<Q", rig.mem.read(pd + 8, 8))[0]
    rig.write(pd + 8, struct.pack("<Q", e & ~2))
    exit = rig.enter()
    assert exit.reason == 48 and exit.qualification & 0x3F == 2 | 1 << 3 | 1 << 5   # write; R, X


def test_misconfiguration_write_without_read():
    rig = _ept_rig("mov eax, [0x200000]")
    root = rig.vmcs["EPT_POINTER"] & ~0xFFF
    pdpt = rig.mem.read_u32(root) & ~0xFFF
    pd = rig.mem.read_u32(pdpt) & ~0xFFF
    e = struct.unpack("<Q", rig.mem.read(pd + 8, 8))[0]
    rig.write(pd + 8, struct.pack("<Q", (e & ~7) | 2))
    exit = rig.enter()
    assert exit.reason == 49 and rig.vmcs["GUEST_PHYSICAL_ADDRESS"] == 0x200000


def test_accessed_and_dirty_flags():
    rig = _ept_rig("mov dword ptr [0x200000], 1\ncpuid", ad=True)
    rig.enter()
    root = rig.vmcs["EPT_POINTER"] & ~0xFFF
    pdpt = rig.mem.read_u32(root) & ~0xFFF
    pd = rig.mem.read_u32(pdpt) & ~0xFFF
    pt = struct.unpack("<Q", rig.mem.read(pd + 8, 8))[0] & ~0xFFF    # 2-4 MiB: 4 KiB pages
    leaf = struct.unpack("<Q", rig.mem.read(pt, 8))[0]
    assert leaf & 0x100 and leaf & 0x200                      # accessed and dirty
    code_leaf = struct.unpack("<Q", rig.mem.read(pd, 8))[0]       # 0-2 MiB: one 2 MiB page
    assert code_leaf & 0x100 and code_leaf & 0x80
    assert rig.mem.read_u32(root) & 0x100                     # accessed on the way down


def test_unrestricted_guest_without_paging_goes_through_the_ept():
    rig = _ept_rig("mov eax, [0x280000]", holes=[(0x280000, 0x281000)], paging=False)
    exit = rig.enter()
    assert exit.reason == 48 and exit.qualification & (1 << 7) == 0   # no linear address


def _vpid_rig(vpid: int) -> VmxRig:
    # The guest reads 0x200000 twice; between the two the monitor points the
    # PTE elsewhere without telling the TLB.
    rig = VmxRig("mov eax, [0x200000]\ncpuid\nmov ebx, [0x200000]\ncpuid")
    rig.write(0x200000, struct.pack("<I", 1))
    rig.write(0x210000, struct.pack("<I", 2))
    if vpid:
        rig.vmcs["VPID"] = vpid
        rig.controls(proc2=C.SEC_ENABLE_VPID)
    exit = rig.enter()
    rig.resume_after(exit)
    rig.set_pte(0x200000, 0x210000 | 7)
    return rig


def test_without_vpid_entries_and_exits_flush_the_tlb():
    rig = _vpid_rig(0)
    rig.enter()
    assert rig.cpu.r[3] == 2


def test_with_vpid_the_tagged_entries_survive_until_invvpid():
    rig = _vpid_rig(5)
    rig.enter()
    assert rig.cpu.r[3] == 1                                   # the stale, tagged translation
    rig = _vpid_rig(5)
    invvpid(rig.cpu, 0, 5, 0x200000)                           # individual address
    rig.enter()
    assert rig.cpu.r[3] == 2
