"""`ringvisor compare`'s `container` column: the same Linux-process nanobenchmarks
(guests/container/ctrbench) on the host and inside a ringvisor-oci container, in one
compare run, so their ratio is what sharing the kernel costs; and the container probe,
what a contained process can observe about its confinement."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from ringvisor import guests
from ringvisor.errors import RingvisorError

from ringvisor.containers.listing import DEFAULT_SPEC

NANOBENCH = re.compile(r"^nanobench (\S+) iters=(\d+) cycles_per_iter=(\d+) ns_per_iter=([\d.]+)$")
PROBE_VISIBLE = re.compile(r"^probe (\S+) .* VISIBLE$")
VERDICT = re.compile(r"^container visible: (yes|no)$")
# ctrbench's names as rows of compare's table (the guest's syscall and divzero rows)
ROWS = {"getpid": "syscall", "pgfault": "pgfault", "divzero": "divzero", "mprotect": "mprotect"}
REPEATS = 5  # host and container alternate; the median of each is kept


def unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (it runs a container)"
    try:
        guests.path("container/build/ctrbench")
    except RingvisorError as exc:
        return str(exc)
    return None


def _bundle(directory: str, args: list[str]) -> str:
    rootfs = os.path.join(directory, "rootfs")
    for d in ("proc", "sys", "dev", "tmp"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    shutil.copy2(guests.path("container/build/ctrbench"), os.path.join(rootfs, "ctrbench"))
    config = json.loads(json.dumps(DEFAULT_SPEC))
    config["process"].update(terminal=False, args=["/ctrbench", *args])
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    return directory


def _in_container(args: list[str]) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="ringvisor-compare-") as work:
        bundle = _bundle(work, args)
        cid = f"ringvisor-compare-{os.getpid()}"
        result = subprocess.run(
            [sys.executable, "-m", "ringvisor.containers", "--root", os.path.join(work, "state"),
             "run", "--bundle", bundle, cid], capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"ringvisor-oci run failed: {result.stderr.strip()[-300:]}")
    return result.stdout.splitlines()


def _on_host(args: list[str]) -> list[str]:
    result = subprocess.run([guests.path("container/build/ctrbench"), *args],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"ctrbench failed on the host: {result.stderr.strip()}")
    return result.stdout.splitlines()


def _parse(lines: list[str]) -> dict[str, tuple[int, float]]:
    found = {m[1]: (int(m[3]), float(m[4])) for m in map(NANOBENCH.match, lines) if m}
    if set(found) != set(ROWS):
        raise RuntimeError(f"ctrbench printed {sorted(found)}, not {sorted(ROWS)}")
    return found


def measure(iters: int) -> tuple[dict, dict]:
    """(the container column's entry, the host baseline), in compare's entry format."""
    from statistics import median
    args = ["nanobench", str(iters)]
    host_runs, container_runs = [], []
    for _ in range(REPEATS):
        host_runs.append(_parse(_on_host(args)))
        container_runs.append(_parse(_in_container(args)))
    probe = _in_container(["probe"])
    verdict = [m[1] for m in map(VERDICT.match, probe) if m]
    if not verdict:
        raise RuntimeError("the container probe gave no verdict")
    host_probe = _on_host(["probe"])
    entry = {"command": "ringvisor-oci run (runc's default spec; guests/container/ctrbench)",
             "probe_visible": verdict[0] == "yes",
             "probe_leaks": [m[1] for m in map(PROBE_VISIBLE.match, probe) if m],
             "probe_lines": probe, "host_probe_lines": host_probe,
             "mips": None, "compute_checksum": None, "nanobench": {}}
    host = {}
    for name, row in ROWS.items():
        ns_host = median(r[name][1] for r in host_runs)
        ns_ctr = median(r[name][1] for r in container_runs)
        host[row] = {"ns_per_iter": ns_host}
        entry["nanobench"][row] = {
            "ns_per_iter": ns_ctr, "traps_per_iter": 0.0,
            "guest_cycles_per_iter": median(r[name][0] for r in container_runs),
            "host_ns_per_iter": ns_host, "ratio_to_native": ns_ctr / ns_host if ns_host else None}
    return entry, host


def add_to(doc: dict, iters: int, progress=None) -> None:
    """Add the `container` column (or the reason it is missing) to a compare document.
    ctrbench's loops are short next to a guest's: it runs 100x compare's --iters."""
    why = unavailable()
    if why:
        doc["unavailable"]["container"] = why
        return
    if progress:
        progress("container: nanobench on the host and in a ringvisor-oci container, probe")
    try:
        entry, host = measure(iters * 100)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        doc["unavailable"]["container"] = f"the container run failed: {exc}"
        return
    doc["techniques"]["container"] = entry
    doc["container_host_baseline"] = host
