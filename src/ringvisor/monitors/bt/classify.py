"""What the binary translator does with each guest kernel instruction,
read off the soft CPU's opcode table (PRIV, IOPL, SENSITIVE flags) and a
few rows named here.

* COPY: innocuous: the bytes run unchanged in the translation cache at real
  ring 1 and behave exactly as at ring 0 (a fault they raise is a guest
  fault, mapped back to the guest instruction).
* JUMP, JCC, CALL, LOOP: direct control transfers, rewritten so that they
  stay inside the cache (chained to the target's translation) and CALL
  pushes the guest's return address, not the cache's.
* CALLOUT: the instruction is replaced by a one-byte HLT (privileged at
  ring 1: #GP into the monitor through its IDT), and the monitor emulates
  it against the virtual CPU. The kind names it in the statistics.

A callout either continues (the monitor resumes at the translation of the
next guest instruction) or ENDS the block (it transfers control).
"""
from __future__ import annotations

from ringvisor.cpu.isa.opcodes import IOPL, PRIV, SENSITIVE

COPY, JUMP, JCC, CALL, LOOP, CALLOUT = "copy", "jump", "jcc", "call", "loop", "callout"
# Innocuous, but not at home in the cache (a CS-relative operand, a 16-bit
# jump): run from the guest's own code, one instruction, single-stepped at
# ring 1 as trap would run it.
STEP = "step"
CS_SEG, SS_SEG = 1, 2

# Callouts that transfer control: nothing after them in the block runs.
ENDS = frozenset({"ret", "indirect jmp", "indirect call", "far jmp", "far call", "int", "iret",
                  "retf", "hlt", STEP})

# mnemonic -> callout kind, for rows whose flags alone do not say
BY_MNEMONIC = {
    "RET": "ret", "RETF": "retf", "IRET": "iret", "INT": "int", "INT3": "int", "INTO": "int",
    "PUSHF": "pushf", "POPF": "popf", "HLT": "hlt", "CLI": "cli", "STI": "sti",
    "SGDT": "sgdt", "SIDT": "sidt", "SLDT": "sldt", "STR": "str", "SMSW": "smsw",
    "LAR": "lar", "LSL": "lsl", "VERR": "verr", "VERW": "verw", "LSS": "mov ss",
}
# opcode (as the table spells it) -> kind
BY_OPCODE = {"E8": CALL, "E9": JUMP, "EB": JUMP, "E0": LOOP, "E1": LOOP, "E2": LOOP, "E3": LOOP,
             "EA": "far jmp", "9A": "far call", "FF /2": "indirect call", "FF /3": "far call",
             "FF /4": "indirect jmp", "FF /5": "far jmp", "0E": "push cs", "16": "push ss",
             "17": "mov ss"}
IO = frozenset({"IN", "OUT", "INS", "INSB", "OUTS", "OUTSB"})
# Marked SENSITIVE (segment registers) but exact at ring 1 for DS/ES/FS/GS:
# the rewritten descriptors admit the guest's selectors; CS/SS forms are above.
DATA_SEGMENT_LOADS = frozenset({"PUSH", "POP", "MOV", "LES", "LDS", "LFS", "LGS"})


def classify(ins) -> tuple[str, str | None]:
    """(action, callout kind or None) for a decoded guest instruction."""
    row = ins.row
    if row is None or ins.ud:
        return COPY, None                       # #UD at ring 1 as at ring 0
    op, mn = row.opcode, row.mnemonic
    kind = BY_OPCODE.get(op)
    if kind in (CALL, JUMP, LOOP) or row.family == "Jcc":
        if ins.osz != 4:
            return CALLOUT, STEP                # a 16-bit EIP in 32-bit kernel code
        return (JCC, None) if row.family == "Jcc" else (kind, None)   # a CS prefix: a hint
    if kind is not None:
        return CALLOUT, kind
    if mn in BY_MNEMONIC:
        return CALLOUT, BY_MNEMONIC[mn]
    if op == "8C" and ins.reg in (CS_SEG, SS_SEG):
        return CALLOUT, "mov from cs/ss"        # the RPL is the real CPL
    if op == "8E" and ins.reg == SS_SEG:
        return CALLOUT, "mov ss"                # SS.RPL must equal the real CPL
    if 0x2E in ins.prefixes:
        return CALLOUT, STEP                    # CS in translated code is the cache's segment
    if row.flags & IOPL:
        return CALLOUT, "io" if mn in IO else mn.lower()
    if row.flags & PRIV:
        return CALLOUT, "privileged"
    if row.flags & SENSITIVE and mn not in DATA_SEGMENT_LOADS:
        return CALLOUT, mn.lower()
    return COPY, None
