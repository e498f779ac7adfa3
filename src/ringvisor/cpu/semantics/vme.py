"""Virtual-mode extensions (CR4.VME, SDM vol. 3A 20.3) and protected-mode
virtual interrupts (CR4.PVI, 20.4), as rules on EFLAGS values.

With VME, virtual-8086 code below IOPL 3 keeps a virtual interrupt flag
(EFLAGS.VIF) instead of faulting: CLI/STI change VIF, the 16-bit PUSHF
pushes VIF as IF (and IOPL as 3), the 16-bit POPF and IRET load VIF from
the popped IF, and they #GP(0) instead when they would set VIF while VIP
(an interrupt pending for the v86 task, set by its monitor) is set, or
would set TF. The 32-bit forms still #GP(0). INT n is handled by one of
the six methods of Table 20-2, chosen by VME, IOPL and the vector's bit in
the TSS's interrupt redirection bitmap (the 32 bytes below the I/O
permission bitmap): a clear bit sends it to the 8086 program's own
interrupt vector table at linear 0, as a real-mode INT would.

With PVI, protected-mode code at CPL 3 below IOPL keeps VIF the same way,
for CLI and STI only (POPF, PUSHF and IRET are unchanged).

The functions here are pure (flag values in, flag values out; None for
#GP(0)) so that the soft CPU (system.py, interrupts.py) and the trap and bt
monitors' emulation of a guest's v86 task (monitors/common/v86_emulate.py)
apply the same rules.
"""
from __future__ import annotations

from ringvisor.cpu.architecture import (CR4_PVI, CR4_VME, DF, IF, IOPL_MASK as IOPL, NT, STATUS, TF,
                                        VIF, VIP, VM)

# What the VME forms of POPF and IRET (16-bit) change: not IF, not IOPL.
VME_POPPED = STATUS | TF | DF | NT
REDIRECTION_BYTES = 32              # below the I/O map base in the TSS

# SDM Table 20-2, software interrupts (INT n) in virtual-8086 mode:
# (CR4.VME, IOPL == 3, the vector's redirection bit; None: not consulted)
# -> method. 1 and 4: the protected-mode handler through the IDT; 2 and 3:
# #GP(0) to the virtual-8086 monitor; 5 and 6: redirected to the 8086
# program's IVT (6 with VIF standing in for IF).
METHODS = {(0, True, None): 1, (0, False, None): 2, (1, False, 1): 3,
           (1, True, 1): 4, (1, True, 0): 5, (1, False, 0): 6}
IDT, GP_FAULT, REDIRECT = "idt", "#GP(0)", "redirect"
ACTIONS = {1: IDT, 2: GP_FAULT, 3: GP_FAULT, 4: IDT, 5: REDIRECT, 6: REDIRECT}


def method(cr4: int, iopl: int, redirection_bit) -> int:
    """Table 20-2. `redirection_bit` is a callable giving the vector's bit
    (only consulted with VME: the TSS is not read without it)."""
    vme = cr4 & CR4_VME
    return METHODS[(1 if vme else 0, iopl == 3, redirection_bit() if vme else None)]


def redirection_offset(io_map_base: int, vector: int) -> int:
    """The TSS offset of the byte holding `vector`'s redirection bit."""
    return io_map_base - REDIRECTION_BYTES + (vector >> 3)


def redirection_bit(tr, read, vector: int) -> int | None:
    """`vector`'s bit in the interrupt redirection bitmap of the 32-bit TSS
    `tr` (SDM 20.3.3.5), its bytes read with `read(linear, size)`; None for
    #GP(0): no 32-bit TSS, or one too short to hold the bit (as Bochs does:
    the SDM leaves it unsaid). The soft CPU and the monitors' v86 emulation
    read it each from their own view of memory."""
    if tr.type not in (9, 11) or tr.limit < 103:
        return None
    at = redirection_offset(read(tr.base + 102, 2), vector)
    if at < 0 or at > tr.limit:
        return None
    return read(tr.base + at, 1) >> (vector & 7) & 1


def redirected_frame(flags: int, iopl: int) -> tuple[int, int]:
    """Methods 5 and 6: (the FLAGS image pushed on the 8086 stack, EFLAGS
    afterwards). Method 5 (IOPL 3) pushes FLAGS and clears IF and TF;
    method 6 pushes FLAGS with IOPL 3 and VIF as IF, and clears VIF and TF."""
    image = flags & 0xFFFF
    if iopl == 3:
        return image, flags & ~(IF | TF)
    image = (image & ~IF) | IOPL | (IF if flags & VIF else 0)
    return image, flags & ~(VIF | TF)


# --- CLI and STI ------------------------------------------------------------------------
def cli_sti_virtual(flags: int, cr4: int, cpl: int) -> bool:
    """CLI/STI above IOPL act on VIF (no #GP): in v86 mode with VME, at
    CPL 3 in protected mode with PVI (SDM CLI, STI)."""
    if flags & VM:
        return bool(cr4 & CR4_VME)
    return cpl == 3 and bool(cr4 & CR4_PVI)


def cli_virtual(flags: int) -> int:
    return flags & ~VIF


def sti_virtual(flags: int) -> int | None:
    """VIF set, or None (#GP(0)) while VIP is set."""
    return None if flags & VIP else flags | VIF


# --- PUSHF, POPF and IRET in virtual-8086 mode below IOPL 3 ----------------------------
def pushf_image(flags: int, osz: int) -> int | None:
    """The 16-bit PUSHF image under VME: IF = VIF, IOPL = 3; PUSHFD: None."""
    if osz != 2:
        return None
    return (flags & 0xFFFF & ~IF) | IOPL | (IF if flags & VIF else 0)


def popped_virtual(flags: int, popped: int, osz: int) -> int | None:
    """EFLAGS after the VME form of POPF/IRET (16-bit only) pops `popped`:
    VIF from its IF, IF and IOPL kept; None (#GP(0)) for the 32-bit form,
    for IF=1 while VIP is set, and for TF=1."""
    if osz != 2 or popped & TF or (popped & IF and flags & VIP):
        return None
    new = (flags & ~(VME_POPPED | VIF)) | (popped & VME_POPPED)
    return new | (VIF if popped & IF else 0)
