"""Running a guest under the PV monitor in-process: the Machine the CLI
builds for `--engine soft --technique pv`, its console captured."""
from __future__ import annotations

from ringvisor import monitors
from ringvisor.machine.machine import Machine, MachineConfig


def machine(kernel, cmdline: str = "", technique: str = "pv", **config):
    out = bytearray()
    reserved = monitors.RESERVED_BYTES if technique in ("pv", "trap") else 0
    cfg = MachineConfig(kernel=str(kernel), engine="soft", technique=technique, cmdline=cmdline,
                        timeout=120, reserved_top=reserved, **config)
    m = Machine(cfg, console=out.extend)
    m.output = out
    return m


def run(kernel, cmdline: str = "", **kw):
    """(RunResult, console lines) of a run to the guest's exit."""
    m = machine(kernel, cmdline, **kw)
    try:
        result = m.run()
    finally:
        m.close()
    return result, m.output.decode(errors="replace").replace("\r", "").splitlines()
