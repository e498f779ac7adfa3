"""Shared helpers for the benchmark scripts: timing commands, medians."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def timed(cmd: list[str], expect_rc: int | None = 0, env: dict | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, env={**os.environ, **(env or {})}, timeout=600)
    elapsed = time.perf_counter() - start
    if expect_rc is not None and proc.returncode != expect_rc:
        raise SystemExit(f"benchmark command failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                         f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return elapsed


def median(values: list[float]) -> float:
    return statistics.median(values)


def ensure_built(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise SystemExit(f"not built: {', '.join(missing)} (run `make install`)")
