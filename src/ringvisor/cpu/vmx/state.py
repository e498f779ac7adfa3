"""Guest and host state between the VMCS and the CPU's registers (SDM vol.
3C 24.4-24.5, 26.3.2 loading guest state, 27.3 saving it, 27.5 loading host
state). Segment registers are stored as selector, base, limit and the
access-rights word of 24.4.1: type 3:0, S 4, DPL 6:5, P 7, AVL 12, L 13,
D/B 14, G 15, unusable 16.
"""
from __future__ import annotations

from ringvisor.cpu_state import Segment, TableRegister
from ringvisor.cpu.vmx.vmcs import FIELDS, SEGMENTS

AR_UNUSABLE = 1 << 16
_SEG_FIELDS = {name: (FIELDS[f"GUEST_{name}_SELECTOR"], FIELDS[f"GUEST_{name}_BASE"],
                      FIELDS[f"GUEST_{name}_LIMIT"], FIELDS[f"GUEST_{name}_AR_BYTES"])
               for name in SEGMENTS}
# The CPU's segment list is in encoding order ES CS SS DS FS GS, as is the VMCS's.
_CPU_SEGS = SEGMENTS[:6]


def access_rights(s: Segment) -> int:
    if s.unusable:
        return AR_UNUSABLE
    return (s.type & 15) | s.s << 4 | (s.dpl & 3) << 5 | s.present << 7 | s.avl << 12 | \
        s.db << 14 | s.g << 15


def segment(selector: int, base: int, limit: int, ar: int) -> Segment:
    return Segment(selector=selector & 0xFFFF, base=base & 0xFFFFFFFF, limit=limit & 0xFFFFFFFF,
                   type=ar & 15, s=bool(ar & 0x10), dpl=(ar >> 5) & 3, present=bool(ar & 0x80),
                   avl=bool(ar & 0x1000), db=bool(ar & 0x4000), g=bool(ar & 0x8000),
                   unusable=bool(ar & AR_UNUSABLE))


_SEGMENT_CACHE: dict[tuple, Segment] = {}


def guest_segment(vmcs, name: str) -> Segment:
    """The segment register `name` of the guest area. The Segment objects
    are shared (the CPU replaces, never edits, the segments it holds):
    callers that change one copy it first."""
    f = vmcs.f
    key = tuple(f[e] for e in _SEG_FIELDS[name])
    s = _SEGMENT_CACHE.get(key)
    if s is None:
        if len(_SEGMENT_CACHE) > 4096:
            _SEGMENT_CACHE.clear()
        s = _SEGMENT_CACHE[key] = segment(*key)
    return s


def set_guest_segment(vmcs, name: str, s: Segment) -> None:
    f = vmcs.f
    sel, base, limit, ar = _SEG_FIELDS[name]
    f[sel], f[base], f[limit], f[ar] = s.selector & 0xFFFF, s.base & 0xFFFFFFFF, \
        s.limit & 0xFFFFFFFF, access_rights(s)


_G = {n: FIELDS[n] for n in FIELDS}


def load_guest(cpu, vmcs) -> None:
    """VM entry's register loads (26.3.2): control registers, DR7, the
    SYSENTER MSRs, segment registers, descriptor-table registers, RSP, RIP,
    RFLAGS. The general-purpose registers other than ESP are not in the
    VMCS: the monitor leaves the guest's values in the CPU (as KVM does in
    software around VMLAUNCH). TLB flushing is the caller's (VPID rules)."""
    f = vmcs.f
    cpu.cr0 = f[_G["GUEST_CR0"]]
    cpu.cr3 = f[_G["GUEST_CR3"]]
    cpu.cr4 = f[_G["GUEST_CR4"]]
    cpu.dr[7] = f[_G["GUEST_DR7"]] | 0x400
    cpu.msr[0x174] = f[_G["GUEST_SYSENTER_CS"]]
    cpu.msr[0x175] = f[_G["GUEST_SYSENTER_ESP"]]
    cpu.msr[0x176] = f[_G["GUEST_SYSENTER_EIP"]]
    cpu.flags = (f[_G["GUEST_RFLAGS"]] | 2) & 0x3F7FD7
    cpu.segs = [guest_segment(vmcs, name) for name in _CPU_SEGS]
    cpu.ldtr = guest_segment(vmcs, "LDTR")
    cpu.tr = guest_segment(vmcs, "TR")
    cpu.gdtr = TableRegister(f[_G["GUEST_GDTR_BASE"]], f[_G["GUEST_GDTR_LIMIT"]])
    cpu.idtr = TableRegister(f[_G["GUEST_IDTR_BASE"]], f[_G["GUEST_IDTR_LIMIT"]])
    cpu.r[4] = f[_G["GUEST_RSP"]]
    cpu.eip = f[_G["GUEST_RIP"]]
    cpu.recache_all()


def save_guest(cpu, vmcs) -> None:
    """VM exit's save of the guest-state area (27.3)."""
    f = vmcs.f
    f[_G["GUEST_CR0"]] = cpu.cr0
    f[_G["GUEST_CR3"]] = cpu.cr3
    f[_G["GUEST_CR4"]] = cpu.cr4
    f[_G["GUEST_DR7"]] = cpu.dr[7]
    f[_G["GUEST_SYSENTER_CS"]] = cpu.msr.get(0x174, 0)
    f[_G["GUEST_SYSENTER_ESP"]] = cpu.msr.get(0x175, 0)
    f[_G["GUEST_SYSENTER_EIP"]] = cpu.msr.get(0x176, 0)
    f[_G["GUEST_RFLAGS"]] = cpu.flags
    for i, name in enumerate(_CPU_SEGS):
        set_guest_segment(vmcs, name, cpu.segs[i])
    set_guest_segment(vmcs, "LDTR", cpu.ldtr)
    set_guest_segment(vmcs, "TR", cpu.tr)
    f[_G["GUEST_GDTR_BASE"]], f[_G["GUEST_GDTR_LIMIT"]] = cpu.gdtr.base, cpu.gdtr.limit
    f[_G["GUEST_IDTR_BASE"]], f[_G["GUEST_IDTR_LIMIT"]] = cpu.idtr.base, cpu.idtr.limit
    f[_G["GUEST_RSP"]] = cpu.r[4]
    f[_G["GUEST_RIP"]] = cpu.eip


def _host_segment(selector: int, base: int, code: bool) -> Segment:
    # 27.5.2: base from the field (or 0), limit 4 GiB, G=1, D/B=1, DPL 0,
    # type 11 (code) or 3 (data); unusable if the selector is null (not CS).
    if not code and selector == 0:
        return Segment(selector=0, base=base, limit=0xFFFFFFFF, type=3, dpl=0, db=True, g=True,
                       unusable=True)
    return Segment(selector=selector, base=base, limit=0xFFFFFFFF, type=11 if code else 3,
                   present=True, dpl=0, db=True, s=True, g=True)


_HOST_SEG_FIELDS = tuple(FIELDS[f"HOST_{n}_SELECTOR"] for n in ("ES", "CS", "SS", "DS", "FS", "GS", "TR")) \
    + (FIELDS["HOST_FS_BASE"], FIELDS["HOST_GS_BASE"], FIELDS["HOST_TR_BASE"])
_HOST_CACHE: dict[tuple, tuple] = {}


def load_host(cpu, vmcs) -> None:
    """VM exit's load of the host-state area (27.5.1-27.5.3): the CPU is
    then in the state the monitor set up for itself."""
    f = vmcs.f
    cpu.cr0 = f[_G["HOST_CR0"]]
    cpu.cr3 = f[_G["HOST_CR3"]]
    cpu.cr4 = f[_G["HOST_CR4"]]
    cpu.dr[7] = 0x400
    cpu.msr[0x174] = f[_G["HOST_IA32_SYSENTER_CS"]]
    cpu.msr[0x175] = f[_G["HOST_IA32_SYSENTER_ESP"]]
    cpu.msr[0x176] = f[_G["HOST_IA32_SYSENTER_EIP"]]
    key = tuple(f[e] for e in _HOST_SEG_FIELDS)
    segs = _HOST_CACHE.get(key)
    if segs is None:
        sel = dict(zip(("ES", "CS", "SS", "DS", "FS", "GS", "TR"), key))
        bases = {"FS": key[7], "GS": key[8]}
        segs = _HOST_CACHE[key] = (
            [_host_segment(sel[n], bases.get(n, 0), n == "CS") for n in _CPU_SEGS],
            Segment(selector=sel["TR"], base=key[9], limit=0x67, type=11, s=False),
            Segment(selector=0, base=0, limit=0, type=2, s=False, unusable=True))
    cpu.segs, cpu.tr, cpu.ldtr = list(segs[0]), segs[1], segs[2]
    cpu.gdtr = TableRegister(f[_G["HOST_GDTR_BASE"]], 0xFFFF)
    cpu.idtr = TableRegister(f[_G["HOST_IDTR_BASE"]], 0xFFFF)
    cpu.r[4] = f[_G["HOST_RSP"]]
    cpu.eip = f[_G["HOST_RIP"]]
    cpu.flags = 2
    cpu.recache_all()


# --- for monitors: the VMCS guest area <-> the engine interface's CpuState ---------------
def write_guest_state(vmcs, st) -> None:
    """Fill the guest-state area from a CpuState (ESP included; the other
    general-purpose registers are the monitor's to keep, as in KVM)."""
    f = vmcs.f
    for name, seg in zip(_CPU_SEGS, (st.es, st.cs, st.ss, st.ds, st.fs, st.gs)):
        set_guest_segment(vmcs, name, seg)
    set_guest_segment(vmcs, "LDTR", st.ldt)
    set_guest_segment(vmcs, "TR", st.tr)
    f[_G["GUEST_GDTR_BASE"]], f[_G["GUEST_GDTR_LIMIT"]] = st.gdt.base, st.gdt.limit
    f[_G["GUEST_IDTR_BASE"]], f[_G["GUEST_IDTR_LIMIT"]] = st.idt.base, st.idt.limit
    f[_G["GUEST_CR0"]], f[_G["GUEST_CR3"]], f[_G["GUEST_CR4"]] = st.cr0, st.cr3, st.cr4
    f[_G["GUEST_RSP"]], f[_G["GUEST_RIP"]], f[_G["GUEST_RFLAGS"]] = st.esp, st.eip, st.eflags | 2
    f[_G["GUEST_DR7"]] = 0x400


def read_guest_state(vmcs, gprs) -> "CpuState":
    """The guest's registers as a CpuState: the VMCS's guest area plus the
    general-purpose registers `gprs` (EAX ECX EDX EBX ESP EBP ESI EDI; ESP
    is taken from the VMCS)."""
    from ringvisor.cpu_state import CpuState
    f = vmcs.f
    s = {n: guest_segment(vmcs, n).copy() for n in SEGMENTS}
    return CpuState(eax=gprs[0], ecx=gprs[1], edx=gprs[2], ebx=gprs[3], esp=f[_G["GUEST_RSP"]],
                    ebp=gprs[5], esi=gprs[6], edi=gprs[7], eip=f[_G["GUEST_RIP"]],
                    eflags=f[_G["GUEST_RFLAGS"]], es=s["ES"], cs=s["CS"], ss=s["SS"], ds=s["DS"],
                    fs=s["FS"], gs=s["GS"], tr=s["TR"], ldt=s["LDTR"],
                    gdt=TableRegister(f[_G["GUEST_GDTR_BASE"]], f[_G["GUEST_GDTR_LIMIT"]]),
                    idt=TableRegister(f[_G["GUEST_IDTR_BASE"]], f[_G["GUEST_IDTR_LIMIT"]]),
                    cr0=f[_G["GUEST_CR0"]], cr3=f[_G["GUEST_CR3"]], cr4=f[_G["GUEST_CR4"]])
