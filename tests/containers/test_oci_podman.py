"""A real client: podman drives ringvisor-oci (run, exec with and without a terminal,
stop, rm) on a busybox image imported locally, with its own storage, no network, and
the rlimits this kind of host allows (no CAP_SYS_RESOURCE: podman's defaults would
raise hard limits)."""
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from oci_support import ensure_apt, leftover_cgroups

ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


@pytest.fixture(scope="module")
def podman(tmp_path_factory, busybox_rootfs):
    ensure_apt("podman", "/usr/bin/podman")
    runtime = os.path.join(os.path.dirname(sys.executable), "ringvisor-oci")
    assert os.access(runtime, os.X_OK), "make install puts the ringvisor-oci entry point here"
    work = tmp_path_factory.mktemp("podman")
    base = ["podman", "--root", str(work / "storage"), "--runroot", str(work / "run"),
            "--cgroup-manager", "cgroupfs", "--events-backend", "file",
            "--runtime", runtime]

    def call(*args, check=True, timeout=120):
        result = subprocess.run(base + list(args), capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {result.stderr}")
        return result

    with tarfile.open(work / "rootfs.tar", "w") as tar:
        tar.add(busybox_rootfs, arcname=".")
    call("import", str(work / "rootfs.tar"), "localhost/rvt-busybox")
    yield call
    call("rm", "--all", "--force", check=False)
    call("rmi", "--all", "--force", check=False)
    shutil.rmtree(work, ignore_errors=True)


def test_podman_run_exec_stop_rm(podman):
    links_before = sorted(os.listdir("/sys/class/net"))
    run = podman("run", "--rm", "--network", "none", *ULIMITS, "localhost/rvt-busybox",
                 "sh", "-c", "echo hello from podman; ulimit -n; cat /proc/1/cmdline")
    assert run.stdout.splitlines()[:2] == ["hello from podman", "1024"]
    with_tty = podman("run", "--rm", "-t", "--network", "none", *ULIMITS, "localhost/rvt-busybox",
                      "tty")  # the init's terminal through conmon's --console-socket
    assert with_tty.stdout.strip().startswith("/dev/pts/")
    cid = podman("run", "-d", "--name", "rvt-podman", "--network", "none", *ULIMITS,
                 "localhost/rvt-busybox", "sleep", "300").stdout.strip()
    assert "Up" in podman("ps", "--filter", "name=rvt-podman").stdout
    inside = podman("exec", "rvt-podman", "sh", "-c", "echo exec ok; ps | wc -l; exit 0").stdout
    assert inside.split()[:2] == ["exec", "ok"]
    assert podman("exec", "rvt-podman", "sh", "-c", "exit 5", check=False).returncode == 5
    assert podman("exec", "-t", "rvt-podman", "tty").stdout.strip().startswith("/dev/pts/")
    podman("stop", "-t", "1", "rvt-podman")
    assert "Exited" in podman("ps", "-a", "--filter", "name=rvt-podman").stdout
    podman("rm", "rvt-podman")
    assert podman("ps", "-a", "-q").stdout.strip() == ""
    assert leftover_cgroups({f"libpod-{cid}", cid}) == []
    assert sorted(os.listdir("/sys/class/net")) == links_before


def test_podman_reports_the_runtimes_error(podman):
    result = podman("run", "--rm", "--network", "none", *ULIMITS, "localhost/rvt-busybox",
                    "/nonexistent-program", check=False)
    assert result.returncode != 0
    assert "nonexistent-program" in result.stderr
