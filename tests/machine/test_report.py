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
