#!/usr/bin/env python3
"""How long a container takes to start: ringvisor-oci against runc and crun, in one run.

One busybox bundle (Debian's busybox-static; runc's default spec running `true`) is
run by each runtime in turn, round-robin so that load on the machine falls on all
three alike:
- run: `RUNTIME run ID` (create + start + wait + delete in one command);
- lifecycle: `create`, `start`, then `delete --force`, three commands.
Medians of --runs rounds. On a host with the hybrid cgroup layout (v1 plus a v2 mount
at /sys/fs/cgroup/unified) crun refuses to start; the whole benchmark then runs in a
private mount namespace without that mount, for all three runtimes alike.
The last line is the run figure:
    container_start_ms ringvisor=<x> runc=<y> crun=<z> ratio=<x/y>
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from common import ROOT, median

sys.path.insert(0, str(ROOT / "src"))
from ringvisor.containers import syscalls  # noqa: E402
from ringvisor.containers.listing import DEFAULT_SPEC  # noqa: E402

APPLETS = ("sh", "true")


def make_bundle(directory: str) -> str:
    rootfs = os.path.join(directory, "rootfs")
    for d in ("bin", "proc", "sys", "dev", "etc", "tmp"):
        os.makedirs(os.path.join(rootfs, d))
    shutil.copy2("/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
    for applet in APPLETS:
        os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    config = json.loads(json.dumps(DEFAULT_SPEC))
    config["process"].update(terminal=False, args=["true"])
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    return directory


def leave_hybrid_cgroups() -> bool:
    """In a private mount namespace, unmount the v2 half of a hybrid layout (crun's
    requirement); True when that was needed."""
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split() for line in f]
    hybrid = any(m[4] == "/sys/fs/cgroup/unified" for m in mounts)
    if not hybrid:
        return False
    syscalls.unshare(syscalls.NAMESPACE_FLAGS["mount"])
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    syscalls.umount2("/sys/fs/cgroup/unified")
    return True


def timed(cmd: list[str]) -> float:
    # stderr to a file, not a pipe: a created container holds its stdio open after `create`
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=err, timeout=120)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"benchmark command failed (exit {proc.returncode}): "
                             f"{' '.join(cmd)}\n{err.read().decode(errors='replace')[-2000:]}")
    return elapsed


def runtimes() -> dict[str, str]:
    found = {"ringvisor": str(ROOT / ".venv" / "bin" / "ringvisor-oci")}
    if not os.access(found["ringvisor"], os.X_OK):
        raise SystemExit("ringvisor-oci is not installed (run `make install`)")
    for name in ("runc", "crun"):
        path = shutil.which(name)
        if path is None:
            raise SystemExit(f"{name} is missing (`make bench-containers` installs it from Debian)")
        found[name] = path
    return found


def measure(tools, roots, bundle, runs):
    run_ms = {name: [] for name in tools}
    cycle_ms = {name: [] for name in tools}
    for i in range(runs + 1):  # round 0 warms the page cache and is dropped
        for name, path in tools.items():
            base = [path, "--root", roots[name]]
            cid = f"bench-{name}-{os.getpid()}-{i}"
            run = timed(base + ["run", "--bundle", bundle, cid])
            start = time.perf_counter()
            timed(base + ["create", "--bundle", bundle, cid + "-c"])
            timed(base + ["start", cid + "-c"])
            timed(base + ["delete", "--force", cid + "-c"])
            cycle = time.perf_counter() - start
            if i:
                run_ms[name].append(run * 1000)
                cycle_ms[name].append(cycle * 1000)
    return run_ms, cycle_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("container_start.py needs root (it runs containers)")
    tools = runtimes()
    workaround = leave_hybrid_cgroups()
    with tempfile.TemporaryDirectory(prefix="container-start-") as work:
        bundle = make_bundle(os.path.join(work, "bundle"))
        roots = {name: os.path.join(work, f"state-{name}") for name in tools}
        try:
            run_ms, cycle_ms = measure(tools, roots, bundle, args.runs)
        finally:  # a failed round must not leave containers behind
            for name, path in tools.items():
                for cid in os.listdir(roots[name]) if os.path.isdir(roots[name]) else []:
                    subprocess.run([path, "--root", roots[name], "delete", "--force", cid],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
    print(f"runs: {args.runs} each, round-robin; busybox `true`, runc's default spec"
          + ("; hybrid cgroups: in a private mount namespace without the v2 mount" if workaround else ""))
    print(f"{'runtime':10s} {'run ms':>8s} {'create+start+delete ms':>24s}")
    for name in tools:
        print(f"{name:10s} {median(run_ms[name]):8.1f} {median(cycle_ms[name]):24.1f}")
    x, y, z = (median(run_ms[n]) for n in ("ringvisor", "runc", "crun"))
    print(f"container_start_ms ringvisor={x:.1f} runc={y:.1f} crun={z:.1f} ratio={x / y:.2f}")


if __name__ == "__main__":
    main()
