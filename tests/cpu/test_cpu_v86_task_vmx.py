"""Virtual-8086 tasks (a task switch to a TSS whose EFLAGS has VM=1, SDM
7.3) and virtual-8086 guests in VMX non-root operation (SDM 26.3.1.2)."""
import struct

import pytest

from ringvisor.exits import Halt
from cpu_rig import GDT, IDT, KCODE, KDATA, STACK0, TSS, TSSSEL, Rig, asm, desc, needs_as
from v86_rig import (NT, V86_CS, V86_DS, V86_ES, V86_FS, V86_GS, V86_IP, V86_SP, V86_SS, VM, both,
                     frame, handler_at, lin, v86_rig)

pytestmark = needs_as


# --- entry by task switch ---------------------------------------------------------
TSS_V86, TSS_V86_SEL = 0x3800, 0x58


@both
def test_task_switch_into_v86_task_and_back(blocks):
    rig = Rig()
    rig.cpu.use_blocks = blocks
    rig.standard_gdt()
    rig.gdt[11] = desc(TSS_V86, 0x67, 0x9, s=False, g=False, db=False)
    rig.flush_gdt()
    hi = rig.u32(GDT + TSSSEL + 4)
    rig.mem.write_u32(GDT + TSSSEL + 4, hi | 0x200)            # the current task is busy
    tss = bytearray(0x68)
    struct.pack_into("<II", tss, 0x20, V86_IP, 0x2 | VM | 3 << 12)   # EIP, EFLAGS
    struct.pack_into("<I", tss, 0x28 + 16, V86_SP)                   # ESP
    for i, sel in enumerate((V86_ES, V86_CS, V86_SS, V86_DS, V86_FS, V86_GS)):
        struct.pack_into("<I", tss, 0x48 + 4 * i, sel)
    rig.write(TSS_V86, bytes(tss))
    # The v86 task reads DS:0 and ends with INT 0x30: a task gate back? No:
    # an interrupt gate to ring 0 of its own TSS (SS0:ESP0 from TSS_V86).
    struct.pack_into("<II", tss, 4, STACK0 - 0x2000, KDATA)
    rig.write(TSS_V86, bytes(tss))
    rig.write(lin(V86_DS, 0), b"\x34\x12")
    rig.write(lin(V86_CS, V86_IP), asm("mov ax, [0]\nint 0x30", org=V86_IP, bits=16))
    rig.write(handler_at(0x30), asm("hlt", org=handler_at(0x30)))
    rig.protected("jmp 0x58:0")
    rig.set_idt(0x30, handler_at(0x30), dpl=3)
    assert isinstance(rig.run(), Halt)
    c = rig.cpu
    assert c.tr.selector == TSS_V86_SEL and c.r[0] & 0xFFFF == 0x1234
    eip, cs, fl, esp, ss, es, ds, fs, gs = frame(rig, 9)
    assert c.r[4] == STACK0 - 0x2000 - 36
    assert (eip, cs, esp, ss, es, ds) == (V86_IP + 5, V86_CS, V86_SP, V86_SS, V86_ES, V86_DS)
    assert fl & VM


@both
def test_task_gate_from_v86_saves_vm_in_the_old_tss(blocks):
    rig = v86_rig("mov ax, 0x55\nint 0x40", blocks, iopl=3)
    TSS_B, TSS_B_SEL = 0x3800, 0x58
    rig.gdt[11] = desc(TSS_B, 0x67, 0x9, s=False, g=False, db=False)
    rig.flush_gdt()
    hi = rig.u32(GDT + TSSSEL + 4)
    rig.mem.write_u32(GDT + TSSSEL + 4, hi | 0x200)
    tss = bytearray(0x68)
    struct.pack_into("<II", tss, 0x20, handler_at(0x40), 2)
    struct.pack_into("<I", tss, 0x28 + 16, 0x70000)
    for i, sel in enumerate((KDATA, KCODE, KDATA, KDATA, KDATA, KDATA)):
        struct.pack_into("<I", tss, 0x48 + 4 * i, sel)
    rig.write(TSS_B, bytes(tss))
    rig.write(IDT + 8 * 0x40, struct.pack("<II", TSS_B_SEL << 16, 0xE500))   # task gate, DPL 3
    assert isinstance(rig.run(), Halt)
    c = rig.cpu
    assert c.tr.selector == TSS_B_SEL and not c.flags & VM and c.flags & NT
    saved_eip, saved_flags = rig.u32(TSS + 0x20), rig.u32(TSS + 0x24)
    assert saved_eip == V86_IP + 5 and saved_flags & VM
    assert rig.u32(TSS + 0x48 + 4) & 0xFFFF == V86_CS


# --- VMX non-root: a virtual-8086 guest (SDM 26.3.1.2) --------------------------------
def _v86_vmx_guest(code: str):
    from vmx_rig import VmxRig
    from ringvisor.cpu.semantics.segments import v86_segment
    from ringvisor.cpu.vmx.state import set_guest_segment
    rig = VmxRig("hlt")
    rig.write(lin(V86_CS, V86_IP), asm(code, org=V86_IP, bits=16))
    v = rig.vmcs
    for name, sel in (("ES", V86_ES), ("CS", V86_CS), ("SS", V86_SS), ("DS", V86_DS),
                      ("FS", V86_FS), ("GS", V86_GS)):
        set_guest_segment(v, name, v86_segment(sel))
    v["GUEST_RFLAGS"], v["GUEST_RIP"], v["GUEST_RSP"] = 0x2 | VM | 3 << 12, V86_IP, V86_SP
    return rig


def test_vmx_runs_a_v86_guest_and_its_exits_keep_the_v86_state():
    rig = _v86_vmx_guest("mov ax, 0x1234\nmov ds, ax\ncpuid\nmov bx, ds\ncpuid")
    exit = rig.enter()
    assert exit.reason == 10, exit                          # CPUID exits unconditionally
    v = rig.vmcs
    assert v["GUEST_RFLAGS"] & VM and v["GUEST_RIP"] == V86_IP + 5
    assert (v["GUEST_DS_SELECTOR"], v["GUEST_DS_BASE"], v["GUEST_DS_LIMIT"]) == (0x1234, 0x12340,
                                                                                   0xFFFF)
    assert v["GUEST_CS_AR_BYTES"] == 0xF3 and v["GUEST_DS_AR_BYTES"] == 0xF3
    rig.resume_after(exit)
    exit = rig.enter()                                      # the saved state passes the checks
    assert exit.reason == 10 and rig.cpu.r[3] & 0xFFFF == 0x1234


@pytest.mark.parametrize("field,value,rule", [
    ("GUEST_CS_AR_BYTES", 0xFB, "CS: access rights of a virtual-8086 guest"),
    ("GUEST_SS_BASE", 0x1234, "SS: base of a virtual-8086 guest"),
    ("GUEST_DS_LIMIT", 0xFFFFF, "DS: limit of a virtual-8086 guest"),
])
def test_vmx_entry_checks_of_a_v86_guest(field, value, rule):
    rig = _v86_vmx_guest("cpuid")
    rig.vmcs[field] = value
    exit = rig.enter()
    assert exit.entry_failure and exit.detail.startswith(rule), exit.detail


def test_vmx_v86_guest_needs_cr0_pe_even_unrestricted():
    from vmx_rig import C
    rig = _v86_vmx_guest("cpuid")
    rig.controls(proc2=C.SEC_ENABLE_EPT | C.SEC_UNRESTRICTED_GUEST)
    rig.vmcs["EPT_POINTER"] = rig.ept()
    rig.vmcs["GUEST_CR0"] = 0x30                         # PE and PG clear: allowed unrestricted
    exit = rig.enter()
    assert exit.entry_failure and exit.detail.startswith("RFLAGS.VM set with CR0.PE clear")
