"""Task switching (SDM vol. 3 ch. 7) — placeholder, replaced below."""
from __future__ import annotations

from ringvisor.cpu.core import gp


def switch_via(cpu, d, sel, reason):
    raise gp(sel & 0xFFFC)


def switch_via_gate(cpu, g, code):
    raise gp(0)


def iret_return(cpu):
    raise gp(0)
