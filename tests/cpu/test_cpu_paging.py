"""Paging: #PF error codes and CR2, U/S and R/W with CR0.WP, A/D bits, TLB
(INVLPG, CR3 reload, global pages), 4 MiB pages."""
from ringvisor.exits import Fault, Halt
from cpu_rig import Rig, needs_as

pytestmark = needs_as


def paged(code, cpl=0, wp=False, cr4=0, **regs):
    rig = Rig()
    rig.protected(code, cpl=cpl, **regs)
    rig.identity_paging()
    rig.enable_paging(wp=wp, cr4=cr4)
    rig.intercept(14)
    return rig


def test_not_present_read_and_write_error_codes():
    rig = paged("mov eax, [0x200010]\nhlt")
    rig.set_pte(0x200000, 0)
    e = rig.run()
    assert isinstance(e, Fault) and e.vector == 14 and e.error_code == 0 and e.cr2 == 0x200010
    rig = paged("mov [0x200010], eax\nhlt", cpl=3)
    rig.set_pte(0x200000, 0)
    e = rig.run()
    assert e.error_code == 6 and rig.cpu.cr2 == 0x200010


def test_user_access_to_supervisor_page():
    rig = paged("mov eax, [0x200000]\nhlt", cpl=3)
    rig.set_pte(0x200000, 0x200000 | 3)                    # present, writable, supervisor
    e = rig.run()
    assert e.vector == 14 and e.error_code == 5


def test_write_protect():
    for wp, expect_fault in ((False, False), (True, True)):
        rig = paged("mov dword ptr [0x200000], 1\nhlt", wp=wp)
        rig.set_pte(0x200000, 0x200000 | 5)                # present, read-only, user
        e = rig.run()
        if expect_fault:
            assert e.vector == 14 and e.error_code == 3
        else:
            assert isinstance(e, Halt) and rig.u32(0x200000) == 1
    rig = paged("mov dword ptr [0x200000], 1\nhlt", cpl=3)
    rig.set_pte(0x200000, 0x200000 | 5)
    assert rig.run().error_code == 7


def test_accessed_and_dirty_bits():
    rig = paged("mov eax, [0x200000]\nmov [0x201000], eax\nhlt")
    rig.run()
    assert rig.u32(rig.pte_addr(0x200000)) & 0x60 == 0x20
    assert rig.u32(rig.pte_addr(0x201000)) & 0x60 == 0x60


def test_tlb_needs_invlpg():
    code = """
        mov eax, [0x200000]
        mov dword ptr [{pte}], 0x300007
        mov ebx, [0x200000]      # stale TLB entry: still the old page
        invlpg [0x200000]
        mov ecx, [0x200000]      # new mapping
        hlt
    """
    rig = Rig()
    rig.identity_paging()
    code = code.format(pte=rig.pte_addr(0x200000))
    rig.protected(code)
    rig.identity_paging()
    rig.enable_paging()
    rig.mem.write_u32(0x200000, 0x1111)
    rig.mem.write_u32(0x300000, 0x2222)
    assert isinstance(rig.run(), Halt)
    r = rig.cpu.r
    assert (r[0], r[3], r[1]) == (0x1111, 0x1111, 0x2222)


def test_global_pages_survive_cr3_reload():
    rig = Rig()
    pte = rig.pte_addr(0x200000)
    pte2 = rig.pte_addr(0x201000)
    code = f"""
        mov eax, [0x200000]
        mov eax, [0x201000]
        mov dword ptr [{pte}], 0x300107
        mov dword ptr [{pte2}], 0x300007
        mov eax, cr3
        mov cr3, eax
        mov ebx, [0x200000]     # global: old translation kept
        mov ecx, [0x201000]     # not global: reloaded
        hlt
    """
    rig.protected(code)
    rig.identity_paging()
    rig.set_pte(0x200000, 0x200107)                        # G=1
    rig.enable_paging(cr4=0x80)                            # PGE
    rig.mem.write_u32(0x200000, 0x1111)
    rig.mem.write_u32(0x201000, 0x3333)
    rig.mem.write_u32(0x300000, 0x2222)
    assert isinstance(rig.run(), Halt)
    assert rig.cpu.r[3] == 0x1111 and rig.cpu.r[1] == 0x2222


def test_4mib_pages():
    rig = Rig(mem_mb=16)
    rig.protected("mov eax, [0x400010]\nhlt")
    rig.identity_paging()
    from cpu_rig import PD
    rig.mem.write_u32(PD + 4, 0x800000 | 0x87)             # 4 MiB page: 4M -> 8M
    rig.mem.write_u32(0x800010, 0xCAFE)
    rig.enable_paging(cr4=0x10)
    assert isinstance(rig.run(), Halt) and rig.cpu.r[0] == 0xCAFE
    assert rig.u32(PD + 4) & 0x20


def test_page_fault_through_idt_pushes_error_code():
    rig = Rig()
    rig.protected("mov eax, [0x200000]\nhlt\nhandler: pop ebx\nmov ecx, cr2\nhlt")
    from cpu_rig import CODE, asm
    handler = CODE + len(asm("mov eax, [0x200000]\nhlt"))
    rig.set_idt(14, handler)
    rig.identity_paging()
    rig.set_pte(0x200000, 0)
    rig.enable_paging()
    assert isinstance(rig.run(), Halt)
    assert rig.cpu.r[3] == 0 and rig.cpu.r[1] == 0x200000
    assert rig.u32(rig.cpu.r[4]) == CODE                    # saved EIP = faulting instruction
