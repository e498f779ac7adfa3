"""The vCPU loop against synthetic exits: no /dev/kvm needed."""
from __future__ import annotations

import pytest

from ringvisor import exits as X
from ringvisor.cpu_state import CpuState
from ringvisor.errors import GuestCrashed
from ringvisor.machine.machine import Machine, MachineConfig


class ScriptedEngine:
    """Plays back a list of exits; each may be a callable producing one."""
    name = "scripted"

    def __init__(self, script):
        self.script = list(script)
        self.state = None
        self.irqs = []

    def irq_line(self, n):
        return lambda level: self.irqs.append((n, level))

    def set_state(self, state):
        self.state = state

    def get_state(self):
        return self.state

    def run(self):
        item = self.script.pop(0)
        return item() if callable(item) else item

    def close(self):
        pass


@pytest.fixture
def kernel(test_kernels):
    return str(test_kernels / "hello.elf")


def machine(kernel, script, out=None):
    out = out if out is not None else bytearray()
    return Machine(MachineConfig(kernel=kernel), out.extend, lambda machine: ScriptedEngine(script)), out


def out(port, value, size=1):
    return X.Io(port=port, size=size, write=True, count=1, data=bytearray(value.to_bytes(size, "little")))


def test_port_writes_reach_devices_and_debug_exit_stops_with_the_status(kernel):
    m, console = machine(kernel, [out(0x3F8, ord("h")), out(0x3F8, ord("i")), out(0xF4, 7)])
    result = m.run()
    assert (result.status, result.reason) == (7, "debug-exit")
    assert console == b"hi"
    ports = {p["port"]: p for p in result.stats["ports"]}
    assert ports[0x3F8]["writes"] == 2 and ports[0xF4]["writes"] == 1


def test_string_port_io_moves_every_element(kernel):
    ins = X.Io(port=0x3FD, size=1, write=False, count=3, data=bytearray(3))   # LSR, three times
    outs = X.Io(port=0x3F8, size=1, write=True, count=3, data=bytearray(b"abc"))
    m, console = machine(kernel, [ins, outs, out(0xF4, 0)])
    assert m.run().status == 0
    assert console == b"abc" and all(b & 0x60 == 0x60 for b in ins.data)   # THR empty, idle


def test_unassigned_ports_read_all_ones_and_are_counted(kernel):
    io = X.Io(port=0x99, size=2, write=False, count=1, data=bytearray(2))
    m, _ = machine(kernel, [io, out(0x99, 1), out(0xF4, 0)])
    result = m.run()
    assert io.data == b"\xff\xff"
    assert {(u["access"], u["address"], u["count"]) for u in result.stats["unknown_accesses"]} == \
        {("read", 0x99, 1), ("write", 0x99, 1)}


def test_triple_fault_is_reported_with_the_guest_state(kernel):
    m, _ = machine(kernel, [X.Shutdown("triple fault")])
    m.engine.state = CpuState.protected_flat(0x100000)
    with pytest.raises(GuestCrashed) as e:
        m.run()
    assert "triple fault" in str(e.value) and "eip=00100000" in str(e.value)
    assert e.value.exit_code == 4


def test_internal_error_report_disassembles_the_instruction(kernel):
    m, _ = machine(kernel, [X.InternalError(1, "emulation failure", b"\x0f\xc7\x0e")])
    m.engine.state = CpuState.protected_flat(0x100000)
    with pytest.raises(GuestCrashed) as e:
        m.run()
    assert "emulation failure" in str(e.value) and "cmpxchg8b" in str(e.value).lower()


def test_unexpected_halt_is_reported(kernel):
    m, _ = machine(kernel, [X.Halt()])
    m.engine.state = CpuState.protected_flat(0x100000)
    with pytest.raises(GuestCrashed, match="halted"):
        m.run()


class BlockingVcpu:
    """A vCPU whose run() plays its script, then blocks as a halted KVM vCPU
    does until request_stop() (KVM's immediate_exit) lets it return."""

    def __init__(self, index, script):
        import threading
        self.index, self.script, self.stopped = index, list(script), threading.Event()
        self.state = CpuState()

    def run(self):
        if self.script:
            return self.script.pop(0)
        self.stopped.wait(10)
        self.stopped.clear()
        return X.Interrupted()

    def request_stop(self):
        self.stopped.set()

    def get_state(self):
        return self.state


class TwoVcpuEngine(ScriptedEngine):
    def __init__(self, ap_script):
        super().__init__([])
        self.vcpus = [BlockingVcpu(0, []), BlockingVcpu(1, ap_script)]
        self.run = self.vcpus[0].run

    def request_stop(self):
        self.vcpus[0].request_stop()


def string_out(port, data: bytes):
    return X.Io(port=port, size=1, write=True, count=len(data), data=bytearray(data))


def test_an_aps_exits_are_served_and_its_debug_exit_ends_the_run_on_the_main_thread(kernel):
    """machine/vcpu_threads.py: an AP's string port write and debug-exit,
    dispatched on its own thread; the bootstrap processor's thread is kicked
    out of its blocking run to end the run; every AP thread is stopped."""
    console = bytearray()
    engine = TwoVcpuEngine([string_out(0x3F8, b"ap"), out(0xF4, 3)])
    m = Machine(MachineConfig(kernel=kernel, timeout=30), console.extend, lambda machine: engine)
    result = m.run()
    assert (result.status, result.reason) == (3, "debug-exit")
    assert console == b"ap"
    assert not any(thread.is_alive() for thread in m.aps.threads)
