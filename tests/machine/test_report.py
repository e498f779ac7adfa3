"""The crash report's mode line and disassembly follow the guest's mode
(machine/report.py): a virtual-8086 guest is not "protected mode, CPL 0"."""
from __future__ import annotations

from ringvisor.cpu_state import CpuState, Segment
from ringvisor.machine.memory import GuestMemory
from ringvisor.machine.report import describe


def _v86_segment(sel: int) -> Segment:
    return Segment(selector=sel, base=sel << 4, limit=0xFFFF, type=3, dpl=3)


def test_a_virtual_8086_guest_is_reported_as_such_and_disassembled_16_bit():
    mem = GuestMemory(1 << 20)
    mem.write(0x20000 + 0x10, bytes([0xB8, 0x34, 0x12, 0xCD, 0x21]))    # mov ax, 0x1234
    seg = _v86_segment(0x2000)
    st = CpuState(eip=0x10, eflags=0x20002, cs=seg, ss=seg, ds=seg, es=seg, fs=seg, gs=seg,
                  cr0=0x11)
    assert st.virtual8086 and st.cpl == 3
    report = describe(st, mem)
    assert report.splitlines()[0] == "  virtual-8086 mode, CPL 3, 16-bit code"
    assert report.splitlines()[-1].endswith("mov ax,1234h    [b8 34 12]")


def test_protected_mode_line_is_unchanged():
    st = CpuState.protected_flat(0x100000)
    assert not st.virtual8086 and st.cpl == 0
    assert describe(st).splitlines()[0] == "  protected mode, CPL 0, 32-bit code"


# --- long mode (the kvm engine's 64-bit guests) ---------------------------------------
def _long_mode_state(cs_l: bool):
    from ringvisor.kvm import structs as S
    from ringvisor.kvm.vcpu import state_from_kvm
    regs, sregs = S.kvm_regs(), S.kvm_sregs()
    for i, n in enumerate(("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
                           "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")):
        setattr(regs, n, 0x1111111100000000 * (i + 1) & 0xFFFFFFFFFFFFFFFF | i)
    regs.rip, regs.rflags = 0xFFFFFFFF81000010, 0x246
    sregs.cs.selector, sregs.cs.l, sregs.cs.db, sregs.cs.present, sregs.cs.s = 0x10, cs_l, not cs_l, 1, 1
    sregs.cs.type = 11
    sregs.cr0, sregs.cr3, sregs.cr4, sregs.efer = 0x80050033, 0x1000, 0x6B0, 0x500 | 1
    sregs.cr2 = 0xFFFF888000001234
    sregs.gs.base = 0xFFFF88807FC00000
    return state_from_kvm(regs, sregs)


def _four_level_tables(mem, linear: int, phys: int) -> None:
    """PML4 at 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000 mapping one 4 KiB page."""
    for table, nxt, shift in ((0x1000, 0x2000, 39), (0x2000, 0x3000, 30), (0x3000, 0x4000, 21)):
        mem.write(table + ((linear >> shift) & 0x1FF) * 8, (nxt | 3).to_bytes(8, "little"))
    mem.write(0x4000 + ((linear >> 12) & 0x1FF) * 8, (phys | 3).to_bytes(8, "little"))


def test_a_64_bit_guest_is_reported_with_its_64_bit_state_and_code():
    from ringvisor.machine.report import page_walk
    st = _long_mode_state(cs_l=True)
    assert st.long_mode is not None and st.eax == 0 and st.long_mode.gprs["rax"] >> 32 == 0x11111111
    mem = GuestMemory(1 << 20)
    _four_level_tables(mem, 0xFFFFFFFF81000000, 0x5000)
    mem.write(0x5010, bytes([0x48, 0x89, 0xC8, 0x0F, 0x0B]))             # mov rax,rcx; ud2
    report = describe(st, mem, page_walk(st, mem)).splitlines()
    assert report[0] == "  long mode (IA-32e), 64-bit mode, CPL 0"
    assert report[1].startswith("  rax=1111111100000000 rbx=2222222200000001")
    assert "r15=" in report[4] and "rip=ffffffff81000010" in report[5]
    assert "gs.base=ffff88807fc00000" in report[7] and "cr2=ffff888000001234" in report[8]
    assert report[-1] == "  at 0010:ffffffff81000010: mov rax,rcx    [48 89 c8]"


def test_compatibility_mode_disassembles_as_32_bit():
    st = _long_mode_state(cs_l=False)
    report = describe(st, None, None, bytes([0x48, 0x89, 0xC8])).splitlines()
    assert report[0] == "  long mode (IA-32e), compatibility mode, 32-bit code, CPL 0"
    assert report[-1].endswith("dec eax    [48]")            # 0x48 is DEC EAX outside 64-bit mode
