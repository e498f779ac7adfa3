"""The techniques `compare` knows, in the order of its table, and whether
this machine can run the bundled guest under each."""
from __future__ import annotations

from dataclasses import dataclass

from ringvisor.errors import RingvisorError


@dataclass(frozen=True)
class Technique:
    name: str            # the JSON and table name
    engine: str
    technique: str       # `ringvisor run --technique`
    ring: int = 1
    paging: str = ""     # hw on the soft engine: ept or shadow
    cmdline: str = ""    # added to the guest's command line (enlighten=1)

    @property
    def command(self) -> str:
        ring = f" --ring {self.ring}" if self.technique == "trap" else ""
        paging = f" --paging {self.paging}" if self.paging else ""
        extra = f" --cmdline {self.cmdline}" if self.cmdline else ""
        return f"--engine {self.engine} --technique {self.technique}{ring}{paging}{extra}"


ALL = (Technique("native", "soft", "native"),
       Technique("trap-ring1", "soft", "trap", 1),
       Technique("trap-ring3", "soft", "trap", 3),
       Technique("bt", "soft", "bt"),
       Technique("pv", "soft", "pv"),
       Technique("hw-shadow", "soft", "hw", paging="shadow"),
       Technique("hw-shadow+pv", "soft", "hw", paging="shadow", cmdline="enlighten=1"),
       Technique("hw-ept", "soft", "hw", paging="ept"),
       Technique("hw", "kvm", "hw"))


def refusal(t: Technique) -> RingvisorError | None:
    """The error that keeps the bundled guest from running under `t` here
    (None: it can run)."""
    return config_refusal(t, workload="probe", guest=None)


def config_refusal(t: Technique, **run_args) -> RingvisorError | None:
    """What `ringvisor run` would refuse for a guest (`run_args`: workload,
    guest, initrd ...) under `t`, by the same checks (None: nothing)."""
    from argparse import Namespace
    from ringvisor.cli.options import vm_config
    args = Namespace(technique=t.technique, engine=t.engine, ring=t.ring, cmdline="", module=[],
                     format="auto", memory="64M", timeout=None, paging=t.paging or None, **run_args)
    try:
        vm_config(args)
    except RingvisorError as e:
        return e
    return None


def unavailable(t: Technique) -> str | None:
    """Why the bundled guest cannot run under `t` here (None: it can)."""
    why = refusal(t)
    return None if why is None else str(why)
