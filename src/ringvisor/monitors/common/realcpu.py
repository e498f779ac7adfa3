"""The monitor's hold on the real CPU, through the engine interface
(get_state/set_state, run) plus the few operations a monitor on real
silicon would do with instructions of its own (INVLPG, a CR3 reload,
RDTSC/WRTSC). Everything engine-specific is here, in small, named pieces:

* `IrqTap` sits between the interrupt controller and the CPU's INTR pin and
  remembers the last vector the CPU acknowledged, so a trap stub entered
  by an external interrupt is told apart from an exception with the same
  vector (on KVM the monitor injects interrupts itself and knows).
* `fast_faults` (soft engine only, optional, off by default): exceptions
  leave `run()` as Fault exits instead of going through the real IDT and
  the stubs. Same monitor code after that; fewer instructions and no
  frame to read. Interrupts always take the stub path.
"""
from __future__ import annotations

from ringvisor.exits import Fault

# CPU exceptions (not INT3/INTO: those are instructions, and fault as #GP on
# the real IDT's DPL-0 gates like any INT n).
INTERCEPTED = sum(1 << v for v in (0, 1, 5, 6, 7, 10, 11, 12, 13, 14, 16, 17))


class IrqTap:
    def __init__(self, controller):
        self.controller = controller
        self.acknowledged: int | None = None
        # The CPU asks at every loop back edge: the controller's own method, no extra frame.
        self.pending = controller.pending

    def acknowledge(self) -> int:
        v = self.controller.acknowledge()
        self.acknowledged = v
        return v

    def take(self, vector: int) -> bool:
        """True if the CPU's last event was the external interrupt `vector`."""
        hit = self.acknowledged == vector
        self.acknowledged = None
        return hit


class RealCpu:
    def __init__(self, engine, controller, fast_faults: bool = False):
        self.engine = engine
        self.tap = IrqTap(controller) if controller is not None else None
        engine.interrupts = self.tap
        self.fast_faults = fast_faults and hasattr(engine, "intercept")
        if self.fast_faults:
            engine.intercept = INTERCEPTED

    @property
    def instructions(self) -> int:
        return self.engine.instructions

    def run(self, budget: int):
        return self.engine.run(max_instructions=budget)

    def get_state(self):
        return self.engine.get_state()

    def set_state(self, state) -> None:
        """Load the real CPU (every register, the TLB flushed: a CR3 load)."""
        self.engine.set_state(state)

    def invlpg(self, linear: int) -> None:
        self.engine.invlpg(linear)

    def flush_tlb(self) -> None:
        self.engine.flush_tlb()

    def tsc(self) -> int:
        return self.engine.tsc()

    def set_tsc(self, value: int) -> None:
        self.engine.tsc_offset = value - self.engine.instructions

    @staticmethod
    def is_fault(exit) -> bool:
        return exit.__class__ is Fault
