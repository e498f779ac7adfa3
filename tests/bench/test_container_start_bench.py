"""bench/container_start.py end to end with one round: its report and last line (the
figures themselves are not asserted: no timing in unit tests)."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "container_start.py"


@pytest.mark.skipif(os.geteuid() != 0, reason="runs containers: needs root")
def test_one_round_prints_the_comparison_line():
    missing = [t for t in ("runc", "crun", "busybox") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing (`make bench-containers` installs them)")
    result = subprocess.run([sys.executable, str(BENCH), "--runs", "1"], capture_output=True,
                            text=True, stdin=subprocess.DEVNULL, timeout=300)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"container_start_ms ringvisor=[\d.]+ runc=[\d.]+ crun=[\d.]+ ratio=[\d.]+",
                        last), last
    assert "create+start+delete" in result.stdout
