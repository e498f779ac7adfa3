"""SingleStepTests vectors on the soft engine: 100% of the applicable ones.

By default a deterministic sample per file (fast);
`RINGVISOR_VECTORS=full pytest tests/testvectors` runs all 96,500 (see
runner.py for each named exclusion).
"""
import os

import pytest

from ringvisor.testvectors.runner import DATA, VectorRunner, run_file, vector_files

SAMPLE = 250
FILES = vector_files()
pytestmark = pytest.mark.testdata


def test_the_vector_files_are_there():
    assert FILES, f"no MOO files under {DATA}"


@pytest.fixture(scope="module")
def runner():
    return VectorRunner()


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name[:5]}-{p.name[:-7]}" for p in FILES])
def test_vectors(path, runner):
    vectors_full = os.environ.get("RINGVISOR_VECTORS") == "full"
    res = run_file(path, sample=None if vectors_full else SAMPLE, runner=runner)
    c = res["counts"]
    assert c["fail"] == 0, res["failures"][:5]
    assert c["pass"] > 0


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name[:5]}-{p.name[:-7]}" for p in FILES])
def test_vectors_through_compiled_blocks(path):
    res = run_file(path, sample=60, seed=7, runner=VectorRunner(blocks=True))
    assert res["counts"]["fail"] == 0, res["failures"][:5]
