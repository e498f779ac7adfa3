"""Test-wide fixtures: the kvm marker (skip without /dev/kvm, fail when
RINGVISOR_REQUIRE_KVM=1 as in CI) and the built test kernels."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def kvm_usable() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def pytest_runtest_setup(item):
    if "kvm" in item.keywords and not kvm_usable():
        if os.environ.get("RINGVISOR_REQUIRE_KVM") == "1":
            pytest.fail("RINGVISOR_REQUIRE_KVM=1 but /dev/kvm is missing or not accessible")
        pytest.skip("needs /dev/kvm")


@pytest.fixture(scope="session")
def test_kernels() -> Path:
    """Builds guests/tests (idempotent) and returns its build folder."""
    subprocess.run(["make", "-s", "-C", str(ROOT / "guests" / "tests")], check=True)
    return ROOT / "guests" / "tests" / "build"


@pytest.fixture(scope="session")
def ringos() -> Path:
    """Builds the bundled guest OS (idempotent) and returns its build folder."""
    subprocess.run(["make", "-s", "-C", str(ROOT / "guests" / "os")], check=True)
    return ROOT / "guests" / "os" / "build"
