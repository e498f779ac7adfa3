"""Issue 15, rough edge 8: the test data is found relative to the repository
(or through $RINGVISOR_TESTDATA), and CI fails rather than skips without it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ringvisor.testvectors import data

ROOT = Path(__file__).resolve().parents[2]


def test_default_is_the_repositorys_sibling_shared(monkeypatch):
    monkeypatch.delenv(data.ENV, raising=False)
    assert data.REPOSITORY == ROOT
    assert data.singlestep_dir() == ROOT.parent / "shared" / "testdata" / "x86-singlestep"


def test_environment_variable_wins(monkeypatch, tmp_path):
    monkeypatch.setenv(data.ENV, str(tmp_path))
    assert data.singlestep_dir() == tmp_path / "x86-singlestep"


def _pytest_with_missing_data(tmp_path, require: bool):
    env = dict(os.environ, **{data.ENV: str(tmp_path / "nowhere")})
    env.pop("RINGVISOR_REQUIRE_TESTDATA", None)
    if require:
        env["RINGVISOR_REQUIRE_TESTDATA"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "tests" / "testvectors" / "test_moo_reader.py"), "-k", "real_files"],
                          env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          cwd=ROOT, timeout=120)


def test_missing_data_skips_outside_ci(tmp_path):
    proc = _pytest_with_missing_data(tmp_path, require=False)
    assert proc.returncode == 0 and "1 skipped" in proc.stdout, proc.stdout


def test_missing_data_fails_in_ci(tmp_path):
    proc = _pytest_with_missing_data(tmp_path, require=True)
    assert proc.returncode == 1 and "1 error" in proc.stdout, proc.stdout   # fails at setup
    assert "the shared test data is missing" in proc.stdout
