"""Running a guest under a monitor in-process: the same Machine the CLI
builds for `--engine soft --technique trap|bt|pv`, its console captured."""
from __future__ import annotations

from ringvisor.vm import VmConfig, build_machine


def machine(kernel, cmdline: str = "", technique: str = "trap", ring: int = 1, **config):
    out = bytearray()
    cfg = VmConfig(kernel=str(kernel), engine="soft", technique=technique, ring=ring,
                   cmdline=cmdline, timeout=120, **config)
    m = build_machine(cfg, out.extend)
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
