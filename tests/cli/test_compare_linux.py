"""`ringvisor compare --guest linux` without booting: its options, the
one-line errors before any boot, and the parser on a recorded run (the
console lines of guests/linux/nanobench and the RDTSC log around them)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from ringvisor.compare import linux_guest, report
from ringvisor.compare.techniques import ALL


def compare(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ringvisor", "compare", *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120, env=env)


def one_line_error(proc, code=2):
    assert proc.returncode == code and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_without_make_linux_it_says_so_in_one_line(tmp_path):
    import os
    env = {**os.environ, "RINGVISOR_GUESTS": str(tmp_path)}
    line = one_line_error(compare("--guest", "linux", env=env))
    assert "run `make linux`" in line and str(tmp_path / "linux" / "build") in line


@pytest.fixture
def fake_build(tmp_path, monkeypatch):
    """A guests/linux/build with stand-in files: enough for the checks made before any boot."""
    build = tmp_path / "linux" / "build"
    build.mkdir(parents=True)
    for name in ("vmlinuz", "initrd.cpio.gz"):
        (build / name).write_bytes(b"stand-in")
    monkeypatch.setenv("RINGVISOR_GUESTS", str(tmp_path))
    import os
    return {**os.environ, "RINGVISOR_GUESTS": str(tmp_path)}


def test_options_that_cannot_apply_are_refused_before_booting(fake_build):
    for args, message in ((("--iters", "9000"), "--iters 9000: with --guest linux at most 8000"),
                          (("--iters", "5"), "--iters must be at least 10"),
                          (("--only", "native,container"), "the container column goes with the bundled guest"),
                          (("--only", "native,nope"), "unknown technique 'nope'")):
        assert message in one_line_error(compare("--guest", "linux", *args, env=fake_build))
    proc = compare("--guest", "bsd")
    assert proc.returncode == 2 and "invalid choice: 'bsd'" in proc.stderr


def test_techniques_debians_kernel_cannot_use_are_refused_with_their_reason(fake_build):
    line = one_line_error(compare("--guest", "linux", "--only", "pv,hw-shadow+pv", env=fake_build))
    assert line.startswith("ringvisor: nothing to measure here: ")
    assert "pv: a stock Linux kernel is not written for ringvisor's PV ABI" in line
    assert "hw-shadow+pv: enlighten=1 is ringos's paravirtual MMU hint" in line
    for t in ALL:
        why = linux_guest.refusal(t)
        if t.engine == "soft" and t.name not in ("pv", "hw-shadow+pv"):
            assert why is None, (t.name, why)


def test_the_estimate_names_every_boot_and_adds_up_their_minutes():
    chosen = [t for t in ALL if t.name in ("native", "hw-ept")]
    text = linux_guest.estimate(chosen)
    low = linux_guest.MINUTES["native"][0] + linux_guest.MINUTES["hw-ept"][0]
    high = linux_guest.MINUTES["native"][1] + linux_guest.MINUTES["hw-ept"][1]
    assert text.startswith("2 boot(s) of Debian's kernel (native, hw-ept)")
    assert f"about {low}-{high} minutes" in text
