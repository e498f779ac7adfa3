"""Bad input to `ringvisor run`: one clear line, a non-zero exit, no traceback."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest


def ringvisor(*args):
    return subprocess.run([sys.executable, "-m", "ringvisor", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)


@pytest.mark.parametrize("args,code,pattern", [
    (["run", "/nonexistent/kernel.elf"], 2, "does not exist"),
    (["run", "{k}", "--memory", "0"], 2, "must be positive"),
    (["run", "{k}", "--memory", "1000001"], 2, "not a multiple of 4 KiB"),
    (["run", "{k}", "--memory", "9G"], 2, "maximum"),
    (["run", "{k}", "--memory", "lots"], 2, "not a size"),
    (["run", "{k}", "--timeout", "-1"], 2, "positive number of seconds"),
    (["run", "{k}", "--timeout", "nan"], 2, "--timeout nan: must be a positive number of seconds"),
    (["run", "{k}", "--timeout", "inf"], 2, "--timeout inf: must be a positive number of seconds"),
    (["run", "{k}", "--serial", "tcp:1234"], 2, "use stdio or file:PATH"),
    # a monitor keeps the top 4 MiB: the true minimum, as bad input (it was exit 4 and "16M")
    (["run", "--engine", "soft", "--technique", "trap", "--memory", "7M"], 2, "at least 8 MiB of guest RAM"),
    (["run", "--engine", "soft", "--technique", "bt", "--memory", "4M"], 2, "at least 8 MiB of guest RAM"),
    (["run", "--engine", "soft", "--technique", "hw", "--memory", "6M"], 2, "at least 8 MiB of guest RAM"),
    (["run", "{k}", "--technique", "trap", "--paging", "ept"], 2, "applies to --technique hw"),
    (["run", "{k}", "--workload", "compute"], 2, "bundled guest"),
    (["run", "--workload", "nosuch"], 2, "unknown workload"),
    (["run", "{k}", "--module", "/nonexistent/module"], 2, "module .* does not exist"),
    (["run", "{k}", "--memory", "1M"], 2, "does not fit in guest RAM"),
    (["run", "{notmb}"], 2, "without a Multiboot 1 header"),
    (["run", "{junk}"], 2, "neither a Multiboot ELF kernel nor a flat binary"),
])
def test_bad_input_is_one_clear_line(test_kernels, tmp_path, args, code, pattern):
    data = (test_kernels / "hello.elf").read_bytes()
    notmb = tmp_path / "notmb.elf"
    notmb.write_bytes(data.replace(b"\x02\xb0\xad\x1b", b"\x00\x00\x00\x00"))
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\x55" * 4096)
    subst = {"k": str(test_kernels / "hello.elf"), "notmb": str(notmb), "junk": str(junk)}
    args = [a.format(**subst) for a in args]
    proc = ringvisor(*args)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ringvisor: "), proc.stderr
    assert re.search(pattern, lines[0]), lines[0]
