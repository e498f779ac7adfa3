"""The rich Console for reports: at a terminal it wraps to the terminal's
width; into a file or a pipe it never wraps (rich would otherwise assume 80
columns and break lines mid-sentence, and tables mid-row)."""
from __future__ import annotations

from rich.console import Console

UNWRAPPED_WIDTH = 100_000       # wider than any line a report prints


def report_console(file) -> Console:
    isatty = getattr(file, "isatty", None)
    if isatty is not None and isatty():
        return Console(file=file, highlight=False)
    return Console(file=file, highlight=False, width=UNWRAPPED_WIDTH, soft_wrap=True)
