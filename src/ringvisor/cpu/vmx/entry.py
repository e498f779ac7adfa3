"""VM-entry checks (SDM vol. 3C 26.2-26.3), as rules over the VMCS.

`check_controls_and_host` fails VMLAUNCH/VMRESUME with VM-instruction
error 7 (invalid control fields) or 8 (invalid host state), the CPU staying
in root operation; `check_guest` returns the name of the first violated
guest-state rule, and VM entry then fails with exit reason 33 ("VM-entry
failure due to invalid guest state", bit 31 set) after loading host state.
Each rule is one line: (what the SDM says, the test). This CPU is IA-32
(no Intel 64): the IA-32e controls must be 0, natural fields are 32 bits.
"""
from __future__ import annotations

from ringvisor.cpu.vmx import capabilities as CAP
from ringvisor.cpu.vmx import controls as C
from ringvisor.cpu.vmx.state import access_rights, guest_segment
from ringvisor.cpu.vmx.vmcs import VMERR, VmxInstructionError

MAXPHYADDR = 36
_PHYS_MASK = (1 << MAXPHYADDR) - 1
ERROR_CODE_VECTORS = {8, 10, 11, 12, 13, 14, 17}


def _page_address_ok(a: int) -> bool:
    return a & 0xFFF == 0 and a & ~_PHYS_MASK == 0


def eptp_ok(eptp: int) -> bool:
    """24.6.11: memory type UC (0) or WB (6), page-walk length 4 (3 in bits
    5:3), A/D enable only if supported, bits 11:7 and above MAXPHYADDR zero."""
    return eptp & 7 in (0, 6) and (eptp >> 3) & 7 == 3 and eptp & 0xF80 == 0 \
        and eptp & ~_PHYS_MASK == 0


def _injection_problem(v, guest_pe: bool) -> str | None:
    info = v["VM_ENTRY_INTR_INFO_FIELD"]
    if not info & C.INTR_VALID:
        return None
    kind, vector = (info >> 8) & 7, info & 0xFF
    if kind == 1 or kind == 7:
        return "interruption type reserved"
    if kind == C.TYPE_NMI and vector != 2:
        return "NMI injection with a vector other than 2"
    if kind == C.TYPE_HW_EXCEPTION and vector > 31:
        return "hardware exception vector above 31"
    if info & C.INTR_ERROR_CODE_VALID and (not guest_pe or kind != C.TYPE_HW_EXCEPTION
                                           or vector not in ERROR_CODE_VECTORS):
        return "error code delivered where the exception has none"
    if info & 0x7FFFF000:
        return "reserved bits 30:12 of the interruption information"
    if kind in (C.TYPE_SW_INTERRUPT, C.TYPE_PRIV_SW_EXCEPTION, C.TYPE_SW_EXCEPTION) and \
            not 1 <= v["VM_ENTRY_INSTRUCTION_LEN"] <= 15:
        return "software event with an instruction length outside 1..15"
    return None


def control_problems(v) -> list[str]:
    """26.2.1: the VM-execution, VM-exit and VM-entry control fields."""
    proc = v["CPU_BASED_VM_EXEC_CONTROL"]
    pin = v["PIN_BASED_VM_EXEC_CONTROL"]
    proc2 = v["SECONDARY_VM_EXEC_CONTROL"] if proc & C.CPU_ACTIVATE_SECONDARY else 0
    out = [f"{name} {v[name]:#x} outside the allowed settings"
           for name, msr in CAP.CONTROL_MSR.items()
           if (name != "SECONDARY_VM_EXEC_CONTROL" or proc & C.CPU_ACTIVATE_SECONDARY)
           and not CAP.fits(msr, v[name])]
    rules = [
        ("CR3-target count above 4", v["CR3_TARGET_COUNT"] > 4),
        ("I/O bitmap address", proc & C.CPU_USE_IO_BITMAPS and not (
            _page_address_ok(v["IO_BITMAP_A"]) and _page_address_ok(v["IO_BITMAP_B"]))),
        ("MSR bitmap address", proc & C.CPU_USE_MSR_BITMAPS and not _page_address_ok(v["MSR_BITMAP"])),
        ("virtual NMIs without NMI exiting", pin & C.PIN_VIRTUAL_NMIS and not pin & C.PIN_NMI_EXITING),
        ("NMI-window exiting without virtual NMIs",
         proc & C.CPU_NMI_WINDOW_EXITING and not pin & C.PIN_VIRTUAL_NMIS),
        ("EPT pointer", proc2 & C.SEC_ENABLE_EPT and not eptp_ok(v["EPT_POINTER"])),
        ("unrestricted guest without EPT",
         proc2 & C.SEC_UNRESTRICTED_GUEST and not proc2 & C.SEC_ENABLE_EPT),
        ("VPID 0 with VPID enabled", proc2 & C.SEC_ENABLE_VPID and v["VPID"] == 0),
        ("IA-32e mode guest on an IA-32 processor", v["VM_ENTRY_CONTROLS"] & C.ENTRY_IA32E_MODE_GUEST),
        ("host address-space size on an IA-32 processor",
         v["VM_EXIT_CONTROLS"] & C.EXIT_HOST_ADDRESS_SPACE_SIZE),
        ("MSR-load/store areas (not supported: counts must be 0)",
         v["VM_EXIT_MSR_STORE_COUNT"] or v["VM_EXIT_MSR_LOAD_COUNT"] or v["VM_ENTRY_MSR_LOAD_COUNT"]),
        ("entry to SMM outside SMM", v["VM_ENTRY_CONTROLS"] & C.ENTRY_TO_SMM),
    ]
    out += [what for what, bad in rules if bad]
    unrestricted = bool(proc2 & C.SEC_UNRESTRICTED_GUEST)
    problem = _injection_problem(v, bool(v["GUEST_CR0"] & 1) or not unrestricted)
    if problem:
        out.append(problem)
    return out


def host_problems(v) -> list[str]:
    """26.2.2-26.2.4: host control registers and segment selectors."""
    cr0, cr4 = v["HOST_CR0"], v["HOST_CR4"]
    rules = [
        ("host CR0 fixed bits", cr0 & CAP.CR0_FIXED0 != CAP.CR0_FIXED0 or cr0 & ~CAP.CR0_FIXED1),
        ("host CR4 fixed bits", cr4 & CAP.CR4_FIXED0 != CAP.CR4_FIXED0 or cr4 & ~CAP.CR4_FIXED1),
        ("host selector with RPL or TI set", any(
            v[f"HOST_{n}_SELECTOR"] & 7 for n in ("ES", "CS", "SS", "DS", "FS", "GS", "TR"))),
        ("host CS selector null", v["HOST_CS_SELECTOR"] == 0),
        ("host TR selector null", v["HOST_TR_SELECTOR"] == 0),
        ("host SS selector null (IA-32 processor)", v["HOST_SS_SELECTOR"] == 0),
    ]
    return [what for what, bad in rules if bad]


def check_controls_and_host(vmcs) -> None:
    problems = control_problems(vmcs)
    if problems:
        raise VmxInstructionError(VMERR["ENTRY_INVALID_CONTROL"], problems[0])
    problems = host_problems(vmcs)
    if problems:
        raise VmxInstructionError(VMERR["ENTRY_INVALID_HOST_STATE"], problems[0])


def _limit_g_ok(s) -> bool:
    if s.limit & 0xFFF != 0xFFF and s.g:
        return False
    if s.limit & 0xFFF00000 and not s.g:
        return False
    return True


def guest_problem(v) -> str | None:
    """26.3.1: the first guest-state rule the VMCS breaks, or None."""
    proc = v["CPU_BASED_VM_EXEC_CONTROL"]
    proc2 = v["SECONDARY_VM_EXEC_CONTROL"] if proc & C.CPU_ACTIVATE_SECONDARY else 0
    unrestricted = bool(proc2 & C.SEC_UNRESTRICTED_GUEST)
    cr0, cr4, rflags = v["GUEST_CR0"], v["GUEST_CR4"], v["GUEST_RFLAGS"]
    fixed0 = CAP.CR0_FIXED0 & ~(0x80000001 if unrestricted else 0)
    s = {n: guest_segment(v, n) for n in ("ES", "CS", "SS", "DS", "FS", "GS", "LDTR", "TR")}
    cs, ss, tr, ldtr = s["CS"], s["SS"], s["TR"], s["LDTR"]
    v86 = bool(rflags & 0x20000)
    interruptibility = v["GUEST_INTERRUPTIBILITY_INFO"]
    info = v["VM_ENTRY_INTR_INFO_FIELD"]
    injecting_interrupt = info & C.INTR_VALID and (info >> 8) & 7 == C.TYPE_EXTERNAL
    rules = [
        ("CR0 fixed bits", cr0 & fixed0 != fixed0 or cr0 & ~CAP.CR0_FIXED1),
        ("CR0.PG set with CR0.PE clear", cr0 & 0x80000000 and not cr0 & 1),
        ("CR4 fixed bits", cr4 & CAP.CR4_FIXED0 != CAP.CR4_FIXED0 or cr4 & ~CAP.CR4_FIXED1),
        ("RFLAGS reserved bits", rflags & ~0x3F7FD7 or not rflags & 2),
        ("RFLAGS.VM set with CR0.PE clear", v86 and not cr0 & 1),
        ("RFLAGS.IF clear while injecting an external interrupt",
         injecting_interrupt and not rflags & 0x200),
        ("TR: TI flag", tr.selector & 4),
        ("TR: not a busy TSS", tr.type not in (3, 11) or tr.s or not tr.present or tr.unusable),
        ("TR: limit and G", not _limit_g_ok(tr)),
        ("LDTR: not an LDT", not ldtr.unusable and (ldtr.selector & 4 or ldtr.type != 2 or ldtr.s
                                                    or not ldtr.present or not _limit_g_ok(ldtr))),
        ("CS: type", not v86 and (cs.type not in (9, 11, 13, 15) and not (unrestricted and cs.type == 3))),
        ("CS: S or P clear", not v86 and (not cs.s or not cs.present or cs.unusable)),
        ("CS: DPL of a non-conforming code segment differs from SS.DPL",
         not v86 and cs.type in (9, 11) and cs.dpl != ss.dpl and not (unrestricted and cs.type == 3)),
        ("SS: RPL differs from CS.RPL", not v86 and not unrestricted
         and (ss.selector & 3) != (cs.selector & 3)),
        ("SS: type", not v86 and not ss.unusable and ss.type not in (3, 7)),
        ("SS: DPL differs from its RPL", not v86 and not unrestricted and not ss.unusable
         and ss.dpl != ss.selector & 3),
        ("CS: limit and G", not _limit_g_ok(cs)),
        ("GDTR/IDTR limit above 0xFFFF", v["GUEST_GDTR_LIMIT"] > 0xFFFF or v["GUEST_IDTR_LIMIT"] > 0xFFFF),
        ("activity state unsupported", v["GUEST_ACTIVITY_STATE"] not in (C.ACTIVE, C.HLT_STATE, C.SHUTDOWN_STATE)),
        ("HLT activity state with SS.DPL not 0",
         v["GUEST_ACTIVITY_STATE"] == C.HLT_STATE and ss.dpl != 0),
        ("interruptibility reserved bits", interruptibility & ~0xF),
        ("blocking by STI and by MOV SS together",
         interruptibility & 3 == 3),
        ("blocking by STI with RFLAGS.IF clear",
         interruptibility & C.BLOCKING_BY_STI and not rflags & 0x200),
        ("injecting an external interrupt while blocked by STI or MOV SS",
         injecting_interrupt and interruptibility & 3),
        ("VMCS link pointer (no shadow VMCS: must be all ones)",
         v["VMCS_LINK_POINTER"] != 0xFFFFFFFFFFFFFFFF),
    ]
    if v86:
        # 26.3.1.2: a virtual-8086 guest's six segment registers are 8086
        # style: base = selector * 16, limit 0xFFFF, access rights 0xF3.
        for name in ("CS", "SS", "DS", "ES", "FS", "GS"):
            d = s[name]
            rules += [(f"{name}: base of a virtual-8086 guest not selector * 16",
                       d.base != d.selector << 4),
                      (f"{name}: limit of a virtual-8086 guest not 0xFFFF", d.limit != 0xFFFF),
                      (f"{name}: access rights of a virtual-8086 guest not 0xF3",
                       d.unusable or access_rights(d) != 0xF3)]
    for name in ("DS", "ES", "FS", "GS"):
        d = s[name]
        if d.unusable or v86:
            continue
        rules += [(f"{name}: not an accessed data or readable code segment",
                   not d.type & 1 or (d.type & 8 and not d.type & 2) or not d.s or not d.present),
                  (f"{name}: limit and G", not _limit_g_ok(d))]
    for what, bad in rules:
        if bad:
            return what
    return None

