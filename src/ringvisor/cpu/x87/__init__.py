"""The x87 FPU of the soft CPU: a Pentium II's floating-point unit, exact to the
SDM and checked against the host's own x87 (silicon/).

The interface the CPU calls, once per ESC instruction (opcodes D8-DF) and per
WAIT/FWAIT (9B):

    outcome = execute(fpu, opcode, modrm, mem, ctx)

  fpu     an `Fpu` (state.py): one per CPU, plain data, kept across instructions.
  opcode  the ESC opcode byte, or 0x9B for WAIT.
  modrm   the ModRM byte (ignored for WAIT). Memory forms (mod != 11) are looked
          up by their reg field; FOP records opcode & 7 and the whole ModRM.
  mem     None for register forms; for memory forms a long-lived operand-access
          object with
            ea                       the effective address (offset), for FDP
            seg                      the selector of the segment used, for FDS
            read(offset, size) -> int       little-endian, relative to ea
            write(offset, size, value)
          It raises the CPU's own #GP/#SS/#PF; execute lets them through, and
          stores happen before the stack is popped, so a faulting store
          leaves the FPU as it was.
  ctx     a long-lived object (the CPU itself may serve) with attributes
            cr0        CR0 (MP, EM, TS, NE are read)
            cs, eip    the instruction's CS selector and offset, for FCS:FIP
            o32        True for a 32-bit operand size (FNSTENV/FLDENV/FNSAVE/FRSTOR)
            protected  True in protected mode (layouts of SDM vol. 1 fig. 8-9..8-12)
            eflags     read by FCMOVcc, written by FCOMI/FCOMIP/FUCOMI/FUCOMIP
            ax         written by FNSTSW AX

  outcome DONE (0); NM (7) raise #NM; MF (16) raise #MF (CR0.NE=1) before the
          instruction; UD (6) not an instruction of this FPU; FERR (-1) CR0.NE=0
          and an unmasked exception is pending: assert IRQ13 and retry the
          instruction after the handler ran (a PC handler writes port 0xF0, which
          the platform turns into `fpu.ignne = True`; FNCLEX, FNINIT and
          FNSAVE clear it with ES).

Per instruction: one dict lookup (table.TABLE), one handler call, no objects
allocated beyond the integers of the arithmetic. The opcode map is data
(table.py, SDM mnemonics); `mnemonic(opcode, modrm)` names an encoding.

Modules: float80 (the format), rounding (PC/RC, overflow/underflow responses),
arith (add/mul/div/sqrt), convert (memory formats), ops (exception recording,
stack faults), basic_arith, load_store, compare, more_arith, transcendental,
environment (control words, FNSTENV/FLDENV/FNSAVE/FRSTOR), table, execute.
No maintained library exposes exact 80-bit arithmetic with the x87's flags
(softfloatpy binds Berkeley SoftFloat without extF80, and SoftFloat has no
#D, C1 or bias-adjusted unmasked responses), so it is Python integers.
"""
from ringvisor.cpu.x87.execute import DONE, FERR, MF, NM, UD, execute, mnemonic  # noqa: F401
from ringvisor.cpu.x87.state import Fpu  # noqa: F401
