"""The soft engine's gdb target driven directly (no socket, no gdb): the
guest's view under each technique, and the bugs found while wiring it."""
from __future__ import annotations

import subprocess

import pytest

from ringvisor import guests
from ringvisor.gdb.soft_target import SoftTarget
from ringvisor.gdb.target import (BreakpointHit, Exited, Interrupted, Stepped, TargetError,
                                  WatchKind, Watchpoint, WatchpointHit)
from ringvisor.vm import VmConfig, build_machine


def symbols(elf: str) -> dict[str, int]:
    out = subprocess.run(["nm", elf], check=True, capture_output=True, text=True).stdout
    return {name: int(address, 16) for address, _, name in (line.split() for line in out.splitlines())}


def machine_for(technique: str):
    kernel = guests.bundled("ringos-pv" if technique == "pv" else "ringos")
    config = VmConfig(kernel=kernel, engine="soft", technique=technique)
    output = bytearray()
    machine = build_machine(config, output.extend)
    return machine, SoftTarget(machine, technique), symbols(kernel), output


@pytest.mark.parametrize("technique", ["native", "trap", "bt", "pv", "hw"])
def test_breakpoint_step_and_the_guests_own_view(technique):
    machine, target, sym, output = machine_for(technique)
    try:
        target.set_breakpoints(frozenset({sym["sched_tick"]}), frozenset())
        stop = target.resume(step=False)
        assert stop == BreakpointHit(sym["sched_tick"])
        state = target.read_registers()
        assert state.eip == sym["sched_tick"]
        assert state.cs.selector & 3 == (1 if technique == "pv" else 0)   # virtual CPL, not ring 1
        assert target.read_memory(sym["sched_tick"], 1) == machine.memory.read(sym["sched_tick"], 1)
        assert target.resume(step=True) == Stepped()
        after = target.read_registers().eip
        assert sym["sched_tick"] < after < sym["sched_tick"] + 16       # one instruction on
        assert target.resume(step=False) == BreakpointHit(sym["sched_tick"])   # the next tick
        target.detach()
        assert target.resume(step=False) == Exited(0)
        assert b"ringos: exit status 0" in output
    finally:
        machine.close()


def test_bt_breakpoint_on_the_block_the_cpu_stands_in():
    """Regression: a breakpoint set while stopped inside a translated block
    dropped that block under the CPU, and the next register read found a cache
    EIP no guest instruction maps to (a crash report instead of the state)."""
    machine, target, sym, _ = machine_for("bt")
    try:
        ticks = sym["ticks"]
        target.set_watchpoints((Watchpoint(ticks, 4, WatchKind.WRITE),))
        stop = target.resume(step=False)
        assert stop == WatchpointHit(ticks, WatchKind.WRITE)
        eip = target.read_registers().eip
        assert sym["sched_tick"] < eip < sym["sched_tick"] + 0x40
        target.set_watchpoints(())
        target.set_breakpoints(frozenset({sym["sched_tick"]}), frozenset())
        assert target.read_registers().eip == eip
        assert target.resume(step=False) == BreakpointHit(sym["sched_tick"])
    finally:
        machine.close()


def test_interrupt_is_latched_and_registers_under_a_monitor_are_limited():
    machine, target, sym, _ = machine_for("trap")
    try:
        target.interrupt()
        assert target.resume(step=False) == Interrupted()
        state = target.read_registers()
        state.eax ^= 0x1234
        target.write_registers(state)
        assert target.read_registers().eax == state.eax
        state = target.read_registers()
        state.cr3 ^= 0x1000
        with pytest.raises(TargetError, match="cr3 is the monitor's"):
            target.write_registers(state)
    finally:
        machine.close()
