"""Where the shared test data lives: `$RINGVISOR_TESTDATA` when set, else
`shared/testdata` beside the repository (the checkout's sibling `../shared`,
as on the machines this project is developed on)."""
from __future__ import annotations

import os
from pathlib import Path

ENV = "RINGVISOR_TESTDATA"
# src/ringvisor/testvectors/data.py -> the repository's root
REPOSITORY = Path(__file__).resolve().parents[3]


def testdata_root() -> Path:
    configured = os.environ.get(ENV)
    if configured:
        return Path(configured)
    return REPOSITORY.parent / "shared" / "testdata"


def singlestep_dir() -> Path:
    """SingleStepTests' MOO files (`x86-singlestep`)."""
    return testdata_root() / "x86-singlestep"
