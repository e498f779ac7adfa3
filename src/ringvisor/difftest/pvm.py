"""Known divergences of KVM's instruction emulator from the SDM.

On PVM (kvm_pvm) a 32-bit guest's instructions are all executed by the host
kernel's x86 emulator (arch/x86/kvm/emulate.c), at CPL 3 as at CPL 0: the
KVM statistic `insn_emulation` grows by one per guest instruction (the
harness counts it, see runners.KvmRunner.emulated). The emulator runs most
arithmetic as "fastops" (the real instruction on the host CPU, with the
guest's flags), so ALU, shift, multiply, divide and bit-scan results are
the silicon's; where it computes flags itself it can be wrong, and what it
lacks ends the run (CPL 0: KVM_EXIT_INTERNAL_ERROR) or becomes a #UD
injected into the guest (CPL > 0). Those cases are skipped and counted,
never reported as soft-CPU bugs; these are the ones where the emulator is
wrong per the SDM:
"""
from __future__ import annotations

from ringvisor.cpu.core import SF, ZF

# Flags the emulator computes wrongly, by mnemonic: treated as undefined
# when the kvm side is emulated.
EMULATOR_FLAG_QUIRKS: dict[str, int] = {
    # em_aam/em_aad set SF, ZF and PF with an OR of the whole destination at
    # the operand size (32 bits): SF is EAX bit 31 and ZF tests all of EAX.
    # SDM AAM/AAD: "SF, ZF and PF are set according to the resulting binary
    # value in the AL register."
    "AAM": SF | ZF,
    "AAD": SF | ZF,
}


def _enter16(code: bytes) -> bool:
    """ENTER with a 16-bit operand size (66 C8): em_enter pushes (E)BP at the
    stack size, 4 bytes on a 32-bit stack, and sets all of EBP; the SDM
    pushes BP (2 bytes) and sets BP only."""
    i = 0
    while i < len(code) and code[i] in (0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3):
        i += 1
    return i < len(code) and code[i] == 0xC8 and 0x66 in code[:i]


# Instructions the emulator gets wrong beyond flags: a test holding one is
# not run on the kvm side (counted as skipped, by this name).
EMULATOR_WRONG: dict[str, object] = {
    "ENTER (16-bit operand size)": _enter16,
}


def emulator_wrong(program) -> str | None:
    for _, insn in program.listing:
        for name, matches in EMULATOR_WRONG.items():
            if matches(insn.code):
                return name
    return None
