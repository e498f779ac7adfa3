"""`ringvisor run --trace FILE`: one line per event that takes control away
from the guest, to watch a technique at work on real code.

* every exit the machine gets from the engine (on KVM: port and MMIO
  exits, halts, shutdowns; the soft engine runs devices inside the CPU, so
  only halts leave it);
* every trap into a monitor (trap, bt, pv): what entered (exception and
  error code, interrupt, callout, hypercall), the ring the real CPU was in,
  the guest's CS:EIP and instruction (iced-x86), and what the monitor made
  of it, read from the monitor's own counters (so the trace cannot disagree
  with --stats).

Tracing is slow (a disassembly per line) and stops after `limit` lines.
"""
from __future__ import annotations

from collections import Counter

from ringvisor import exits as X
from ringvisor.machine import report

HEADER = f"{'instruction':>13}  {'event':<28} {'where':<24} {'guest instruction':<40} outcome"

# Counters whose keys are not self-explanatory, in the words of docs/monitors.md.
LABELS = {
    "hidden_faults": "hidden fault: shadow PTE filled",
    "pte_write_traps": "write to a traced guest page table: let through, single-stepped",
    "wp0_write_steps": "supervisor write to a read-only page (CR0.WP=0): single-stepped",
    "pte_writes_mirrored": "shadow PTE mirrored",
    "directories_created": "shadow directory created",
    "page_tables_created": "shadow page table created",
    "frames_traced": "guest page table write-protected",
    "resets": "shadow tables reset",
    "gdt_loads": "guest GDT shadowed",
    "delivery_faults": "fault while delivering into the guest",
}
SILENT = {"fills", "cr3_writes", "invlpg", "directories_dropped"}   # implied by the line's instruction


def trap_event(vector_name: str, vector: int, code, external: bool, cr2: int) -> str:
    """The event column for a trap: `interrupt 0x20`, `#GP(0x0)`, `#PF(0x2) cr2=...`."""
    if external:
        return f"interrupt {vector:#04x}"
    event = vector_name + ("" if code is None else f"({code:#x})")
    return event + f" cr2={cr2:08x}" if vector == 14 else event


class Trace:
    def __init__(self, stream, limit: int = 10_000):
        self.stream, self.limit = stream, limit
        self.lines = 0
        self.pending = None
        stream.write(HEADER + "\n")

    @property
    def active(self) -> bool:
        return self.lines < self.limit

    def write(self, instructions, event: str, where: str = "", insn: str = "", outcome: str = "") -> None:
        if not self.active:
            return
        count = "" if instructions is None else f"{instructions:,}"
        self.stream.write(f"{count:>13}  {event:<28} {where:<24} {insn:<40} {outcome}".rstrip() + "\n")
        self.lines += 1
        if not self.active:
            self.stream.write(f"(trace stopped after {self.limit:,} lines)\n")
        self.stream.flush()

    # --- the machine's exits ------------------------------------------------------------------
    def exit(self, exit, instructions) -> None:
        cls = exit.__class__
        if cls is X.Interrupted:
            return                      # the host's slice or signal, not the guest's doing
        if cls is X.Io:
            d = "out" if exit.write else "in"
            value = ""
            if exit.write and exit.data is not None and exit.count == 1:
                value = f" value {int.from_bytes(bytes(exit.data[:exit.size]), 'little'):#x}"
            self.write(instructions, f"exit io {d}", f"port {exit.port:#06x}",
                       outcome=f"{exit.size} byte(s) x {exit.count}{value}")
        elif cls is X.Mmio:
            self.write(instructions, f"exit mmio {'write' if exit.write else 'read'}",
                       f"{exit.address:#010x}", outcome=f"{exit.size} byte(s)")
        elif cls is X.Shutdown:
            self.write(instructions, "exit shutdown", outcome=exit.reason)
        else:
            self.write(instructions, f"exit {cls.__name__.lower()}")

    # --- a monitor's traps --------------------------------------------------------------------
    def trap_begin(self, mon, event: str, real_ring: int, view, memory, counters: dict,
                   at_instruction: bool = True) -> None:
        """Before the monitor handles a trap: `view` is the guest's state at
        the trap (its CS:EIP), `counters` the monitor's counters to diff."""
        if not self.active:
            self.pending = None
            return
        where = f"ring {real_ring}  {view.cs.selector:04x}:{view.eip:08x}"
        insn = ""
        if at_instruction:
            translate = report.page_walk(view, memory) if view.cr0 & 0x80000000 else None
            text = report.disassemble(report.code_bytes(view, memory, translate), view.eip,
                                      32 if view.cs.db else 16)
            insn = text.split("    [")[0]
        snapshot = {name: Counter(c) for name, c in counters.items()}
        self.pending = (mon.instructions, event, where, insn, snapshot)

    def trap_end(self, counters: dict) -> None:
        if self.pending is None:
            return
        instructions, event, where, insn, before = self.pending
        self.pending = None
        done = []
        for name, after in counters.items():
            for key, n in (Counter(after) - before[name]).items():
                if key in SILENT:
                    continue
                label = LABELS.get(key) or (f"{name} {key}" if name else str(key))
                done.append(label if n == 1 else f"{label} x{n}")
        self.write(instructions, event, where, insn, "; ".join(done) or "resumed")
