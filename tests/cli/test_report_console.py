"""Issue 15, rough edge 7: reports written to a file or a pipe are not
wrapped at rich's assumed 80 columns."""
from __future__ import annotations

import io
from types import SimpleNamespace

from ringvisor.cli.report_console import UNWRAPPED_WIDTH, report_console
from ringvisor.cli.stats_view import print_stats

BACKEND = ("PVM (kvm_pvm): no VT-x/AMD-V; 32-bit guest code is emulated by the host kernel at "
           "every CPL, and this sentence goes on well past eighty columns")
COUNTER = "shadow_paging.traced_page_table_writes_mirrored_without_single_stepping"


def soft_result():
    stats = {"engine": "soft", "instructions": 1_483_875, "mips": 3.71,
             "backend": {"description": BACKEND},
             "platform": {"virtual_seconds": 0.015, "idle_virtual_seconds": 0.0, "halts_skipped": 0,
                          "interrupts_by_irq": {0: 1, 4: 6}},
             "monitor": {"shadow_paging": {"traced_page_table_writes_mirrored_without_single_stepping":
                                           123_456_789_012}},
             "ports": [{"port": 0x3F8, "device": "uart16550", "reads": 1, "writes": 2}]}
    return SimpleNamespace(stats=stats, status=0, reason="debug-exit", wall_seconds=0.4)


def test_stats_into_a_file_keep_whole_lines():
    out = io.StringIO()
    print_stats(soft_result(), file=out)
    lines = out.getvalue().splitlines()
    assert f"backend: {BACKEND}" in lines
    assert any(COUNTER in line and "123,456,789,012" in line for line in lines)
    assert any(line.startswith("ringvisor guest exited with status 0 (debug-exit) after 0.400 s "
                               "on the soft engine") for line in lines)
    assert all(line == line.rstrip() for line in lines if not line.startswith(("│", "┃")))


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_keeps_its_width():
    assert report_console(Tty()).width != UNWRAPPED_WIDTH
    assert report_console(io.StringIO()).width == UNWRAPPED_WIDTH
