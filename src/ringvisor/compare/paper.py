"""Adams & Agesen's nanobenchmark figures (ASPLOS 2006), cycles per
iteration on 2006 silicon as the paper's text states them (docs/compare.md,
"The paper's figures", and its source [Q1]): native, software VMM (BT),
hardware VMM. "≈" marks our arithmetic on a relation the text states
("fifteen times faster"), "native" the text's "native speed"."""
from __future__ import annotations

#  row of compare's table: (native, BT, hardware VMM)
CYCLES = {
    "syscall":  ("–", "native + ≈2,000", "native"),
    "in":       ("3,209", "≈210", "15,826"),
    "cr":       ("≈140 (cr8wr)", "35", "native"),
    "call/ret": ("11", "51", "11"),
    "pgfault":  ("1,093", "3,927", "11,242"),
    "divzero":  ("889", "3,223", "1,014"),
    "ptemod":   ("1", "391", "12,733"),
    # mprotect changes a PTE through a system call: the paper's ptemod is the nearest
    "mprotect": ("1 (ptemod)", "391", "12,733"),
}
COLUMN = "paper, cycles: native / BT / hw"


def cell(bench: str) -> str:
    figures = CYCLES.get(bench)
    return " / ".join(figures) if figures else "–"
