"""Fixtures for ringvisor-oci: a busybox bundle (Debian's busybox-static, installed here
when missing), the runtime run as the engines run it (a subprocess with --root), and a
check of the host after each test: no state, cgroup, mount or process left behind."""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from ringvisor.containers.listing import DEFAULT_SPEC

from oci_support import (APPLETS, RUNTIME, assert_one_line_error, ensure_apt,  # noqa: F401
                         host_mounts, leftover_cgroups)


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        for item in items:
            if "tests/containers" in str(item.fspath):
                item.add_marker(pytest.mark.skip(reason="ringvisor-oci tests need root"))


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory) -> Path:
    """A read-only-usable rootfs: busybox-static and its applets, /etc/passwd and group."""
    ensure_apt("busybox-static", "/bin/busybox")
    root = tmp_path_factory.mktemp("busybox") / "rootfs"
    for d in ("bin", "proc", "sys", "dev", "etc", "tmp", "root"):
        (root / d).mkdir(parents=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "user:x:1000:1000:user:/home/user:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\n")
    return root


class Bundle:
    """A bundle dir whose config.json is runc's default spec, non-interactive."""

    def __init__(self, path: Path, rootfs: Path, args):
        self.path = path
        self.config = copy.deepcopy(DEFAULT_SPEC)
        self.config["root"]["path"] = str(rootfs)
        self.config["process"]["terminal"] = False
        self.config["process"]["args"] = list(args)

    def write(self):
        (self.path / "config.json").write_text(json.dumps(self.config))
        return self.path


class Runtime:
    def __init__(self, root: Path, tmp: Path, rootfs: Path):
        self.root, self.tmp, self.rootfs = root, tmp, rootfs
        self.ids = []

    def new_id(self):
        cid = f"rvt-{uuid.uuid4().hex[:10]}"
        self.ids.append(cid)
        return cid

    def bundle(self, *args, name="bundle"):
        path = self.tmp / name
        path.mkdir(exist_ok=True)
        return Bundle(path, self.rootfs, args or ["true"])

    def __call__(self, *args, input=None, timeout=60, check=False):
        # files, not pipes: a created container keeps its stdio open after `create` exits
        import tempfile
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            code = subprocess.run(RUNTIME + ["--root", str(self.root), *map(str, args)],
                                  stdout=out, stderr=err, timeout=timeout, text=True,
                                  stdin=subprocess.DEVNULL if input is None else None,
                                  input=input).returncode
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(args, code, out.read(), err.read())
        if check and result.returncode != 0:
            raise AssertionError(f"ringvisor-oci {args} failed: {result.stderr}")
        return result

    def run(self, bundle, cid=None, **kw):
        bundle.write()
        return self("run", "--bundle", bundle.path, cid or self.new_id(), **kw)


@pytest.fixture
def oci(tmp_path, busybox_rootfs):
    """The runtime with a private --root; afterwards the host is checked: no container
    state, cgroup, mount or process of this test remains."""
    watched = (tmp_path, busybox_rootfs.parent, "/sys/fs/cgroup")
    before = host_mounts(*watched)
    runtime = Runtime(tmp_path / "state", tmp_path, busybox_rootfs)
    yield runtime
    for cid in runtime.ids:  # a failing test must not leave containers running
        runtime("delete", "--force", cid)
    leftovers = []
    if runtime.root.exists():
        leftovers = os.listdir(runtime.root)
    assert leftovers == [], f"state left under --root: {leftovers}"
    assert leftover_cgroups(set(runtime.ids)) == []
    assert host_mounts(*watched) == before
