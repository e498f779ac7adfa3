"""Code that is not hot yet: interpreted, but decoded only once.

The block cache interprets code until it has been reached `hot` times.
Doing that through `SoftEngine.step()` decodes every instruction each
time; here the decoded instruction is kept with its bytes (checked against
memory on every use, so writes by anyone are seen) and executed exactly as
`step()` does after its decode: same EIP/ESP bookkeeping, same privilege
check, same handler. Instructions that cross a page or that the decoder
cannot finish inside the page go through `step()` itself (its fetch may
fault on the second page).
"""
from __future__ import annotations

from ringvisor.cpu.core import CpuFault
from ringvisor.cpu.semantics.protection import CHECKED, check

_CHECKED = int(CHECKED)          # IntFlag's & is a Python-level call


class Cold:
    __slots__ = ("heat", "ins", "p", "end", "code", "mask")

    def __init__(self, cpu, p: int, eip: int):
        self.heat = 0
        self.ins = None
        self.p = p
        self.mask = 0xFFFFFFFF if cpu.code32 else 0xFFFF
        if p + 16 > cpu.ramsize:
            return
        try:
            ins = cpu.decode_at(eip)
        except CpuFault:
            return                             # step() raises it, as the interpreter does
        if (p & 0xFFF) + ins.length > 0x1000:
            return
        self.ins, self.end = ins, p + ins.length
        self.code = bytes(cpu.mm[p:self.end])


def interpret(cpu, cold: Cold, eip: int) -> None:
    """Execute the instruction at eip (what `cold` decoded from physical p)."""
    ins = cold.ins
    if ins is None or cpu.mm[cold.p:cold.end] != cold.code:
        cold.ins = None
        cpu.step()
        return
    cpu.cur_eip = eip
    cpu.cur_esp = cpu.r[4]
    cpu.eip = (eip + ins.length) & cold.mask
    if ins.ud or ins.row.handler is None:
        raise CpuFault(6)
    if int(ins.flags) & _CHECKED:
        check(cpu, ins)
    ins.row.handler(cpu, ins)
    cpu.instructions += 1
