"""Debian's acpica-tools (iasl, acpiexec) for the firmware-table tests:
installed through apt when missing, as `.ci/run` does."""
from __future__ import annotations

import shutil
import subprocess

import pytest


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None and shutil.which("apt-get"):
        for command in (["apt-get", "install", "-y", "-qq", "acpica-tools"],
                        ["apt-get", "update", "-qq"],
                        ["apt-get", "install", "-y", "-qq", "acpica-tools"]):
            subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False, timeout=600)
            path = shutil.which(name)
            if path is not None:
                break
    if path is None:
        pytest.fail(f"{name} is missing and `apt-get install acpica-tools` did not provide it")
    return path
