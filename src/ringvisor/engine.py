"""The engine interface: what the machine and the monitors may ask of "the
hardware", whichever engine provides it (DESIGN.md: engines know nothing of
techniques).
"""
from __future__ import annotations

from typing import Protocol

from ringvisor.cpu_state import CpuState
from ringvisor.exits import Exit


class InterruptController(Protocol):
    """What a CPU's INTR pin sees (an 8259 pair, or any device model of one)."""

    def pending(self) -> bool:
        """True while an unmasked interrupt request is waiting."""

    def acknowledge(self) -> int:
        """The INTA cycle: returns the vector and marks the request in service."""


class Engine(Protocol):
    name: str

    def set_state(self, state: CpuState) -> None: ...

    def get_state(self) -> CpuState: ...

    def run(self) -> Exit:
        """Run the guest until something needs the machine; return why."""

    def close(self) -> None: ...
