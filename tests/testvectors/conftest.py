"""The test vectors come from the shared test data (ringvisor.testvectors.data):
tests marked `testdata` skip without it, and fail instead when
RINGVISOR_REQUIRE_TESTDATA=1 (as in CI, where missing data is a broken setup)."""
from __future__ import annotations

import os

import pytest

from ringvisor.testvectors.data import ENV, singlestep_dir


def pytest_runtest_setup(item):
    if "testdata" not in item.keywords or singlestep_dir().is_dir():
        return
    message = f"the shared test data is missing: {singlestep_dir()} (set {ENV} to where it is)"
    if os.environ.get("RINGVISOR_REQUIRE_TESTDATA") == "1":
        pytest.fail(message)
    pytest.skip(message)
