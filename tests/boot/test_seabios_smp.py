"""Debian's SeaBIOS with `--cpus N` on the soft engine's pc machine: it
starts the APs (INIT-SIPI-SIPI), each takes the shared-stack lock in turn,
and the BSP, waiting for them with PAUSE, counts every CPU and POSTs to the
end. Before PAUSE ended a CPU's turn (machine/smp.py) the lock handoff lined
up with the 10,000-instruction quantum and the AP never got the lock (the
BSP spun until --timeout): these runs are the regression test."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

SEABIOS = "/usr/share/seabios/bios.bin"

pytestmark = pytest.mark.skipif(not os.path.exists(SEABIOS),
                                reason="Debian's seabios package is not installed")


def seabios(tmp_path, cpus: int):
    """(exit status, stderr, debugcon log, --json statistics) of one POST."""
    log, stats = tmp_path / f"debugcon{cpus}.txt", tmp_path / f"s{cpus}.json"
    proc = subprocess.run([sys.executable, "-m", "ringvisor", "run", "--bios", SEABIOS,
                           "--cpus", str(cpus), "--debugcon", f"file:{log}", "--json", str(stats),
                           "--stats", "--timeout", "240"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    doc = json.loads(stats.read_text()) if stats.exists() else {}
    return proc.returncode, proc.stderr, log.read_text() if log.exists() else "", doc


@pytest.mark.parametrize("cpus", [2, 3])
def test_seabios_finds_every_cpu_and_posts_to_the_end(tmp_path, cpus):
    status, err, debug, doc = seabios(tmp_path, cpus)
    assert status == 0, err
    assert err.splitlines()[0] == "ringvisor: guest reset (port 0xCF9 hard reset) (status 0)"
    for ap in range(1, cpus):
        assert f"handle_smp: apic_id={ap:#x}" in debug, debug
    for line in (f"Found {cpus} cpu(s) max supported {cpus} cpu(s)", "sercon: using ioport 0x3f8",
                 "No bootable device.", "Attempting a hard reboot"):
        assert line in debug, (line, debug)
    per_cpu = doc["cpus"]
    assert [c["startups"] for c in per_cpu] == [0] + [1] * (cpus - 1)
    assert per_cpu[0]["pause_yields"] > 0          # the BSP gave its turns to the APs
    lines = [line for line in err.splitlines() if re.match(r"cpu\d+ instructions=\d+ ", line)]
    assert len(lines) == cpus and all("pause_yields=" in line for line in lines)


def test_seabios_on_two_cpus_repeats_to_the_instruction(tmp_path):
    first = seabios(tmp_path, 2)[3]["cpus"]
    again = seabios(tmp_path, 2)[3]["cpus"]
    assert [(c["instructions"], c["pause_yields"]) for c in first] == \
        [(c["instructions"], c["pause_yields"]) for c in again]
