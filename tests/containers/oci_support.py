"""What the ringvisor-oci tests share besides fixtures: the runtime's command,
the busybox applets, apt for missing tools, and checks of the host. (A module
of its own, not conftest.py: other test folders have a conftest too, and
`from oci_support import` would find whichever was imported first.)"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ringvisor.containers import cgroups

RUNTIME = [sys.executable, "-c", "from ringvisor.containers.cli import entry; entry()"]
APPLETS = ("sh", "cat", "echo", "id", "ls", "ps", "sleep", "hostname", "mkdir", "touch",
           "head", "tr", "grep", "mount", "mknod", "seq", "wc", "true", "false", "env",
           "pwd", "domainname", "ulimit", "test", "dd", "uname", "stat", "tty", "readlink",
           "kill")


def ensure_apt(package, path):
    """Install a Debian package the tests need when its file is missing (fresh machines)."""
    if os.path.exists(path):
        return
    if os.geteuid() != 0:
        pytest.skip(f"{path} is missing and installing {package} needs root")
    subprocess.run(["apt-get", "update", "-qq"], stdin=subprocess.DEVNULL, check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], stdin=subprocess.DEVNULL,
                   check=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def host_mounts(*paths):
    """The host's mounts on or below the given paths or naming a test container (other
    work on a shared machine may mount elsewhere meanwhile)."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return sorted(p for p in points if "rvt-" in p or any(p.startswith(str(x)) for x in paths))


def leftover_cgroups(ids):
    found = []
    for h in cgroups.hierarchies():
        for dirpath, dirnames, _ in os.walk(h.mount):
            found += [os.path.join(dirpath, d) for d in dirnames if d in ids]
    return found


def assert_one_line_error(result):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ringvisor-oci: "), result.stderr
    assert "Traceback" not in result.stderr
