"""The comparison as data (the `--json` document) and as a table."""
from __future__ import annotations

from rich.table import Table

from ringvisor.compare import measure, paper
from ringvisor.compare.techniques import ALL, Technique, unavailable
from ringvisor.errors import RingvisorError

# Adams & Agesen's nanobenchmarks as ringos names them (the PV build's
# hypercall variants are the same rows).
BENCH_ORDER = ("syscall", "in", "cr", "call/ret", "pgfault", "divzero", "ptemod", "mprotect")


def measure_technique(t: Technique, iters: int, rounds: int, progress=None) -> dict:
    def step(what):
        if progress:
            progress(f"{t.name}: {what}")
    step("probe")
    visible, leaks = measure.probe(t)
    step("compute")
    mips, checksum, why_no_mips = measure.compute_mips(t, rounds)
    step("nanobench")
    bench = measure.nanobench(t, iters)
    entry = {"command": f"ringvisor run {t.command}", "probe_visible": visible, "probe_leaks": leaks,
             "mips": mips, "compute_checksum": checksum, "nanobench": bench}
    if why_no_mips:
        entry["mips_note"] = why_no_mips
    return entry


def compare(techniques=ALL, iters: int = 1000, rounds: int = 4, progress=None,
            container: bool = True) -> dict:
    doc = {"techniques": {}, "unavailable": {}}
    for t in techniques:
        why = unavailable(t)
        if why:
            doc["unavailable"][t.name] = why
            continue
        try:
            doc["techniques"][t.name] = measure_technique(t, iters, rounds, progress)
        except RingvisorError as e:              # e.g. a monitor this build lacks
            doc["unavailable"][t.name] = str(e).splitlines()[0]
        except RuntimeError as e:
            doc["unavailable"][t.name] = f"the guest failed: {e}"
    measure.add_ratios_to_native(doc)
    if container:  # OS-level: a Linux process in a container, its ratios to the same on the host
        from ringvisor.compare import container_column
        container_column.add_to(doc, iters, progress)
    return doc


def table(doc: dict) -> Table:
    names = list(doc["techniques"])
    t = Table(title="ns per iteration on the host (traps per iteration) ×ratio to native",
              title_justify="left")
    t.add_column("")
    for n in names:
        t.add_column(n, justify="right")
    t.add_column(paper.COLUMN, justify="right", style="dim")
    benches = [b for b in BENCH_ORDER if any(b in e["nanobench"] for e in doc["techniques"].values())]
    for b in benches:
        row = []
        for n in names:
            r = doc["techniques"][n]["nanobench"].get(b)
            if r is None:
                row.append("–")
                continue
            ratio = f" ×{r['ratio_to_native']:.1f}" if r.get("ratio_to_native") else ""
            traps = "?" if r["traps_per_iter"] is None else f"{r['traps_per_iter']:.2f}"
            row.append(f"{r['ns_per_iter']:,.0f} ({traps}){ratio}")
        t.add_row(b, *row, paper.cell(b))
    if any("mips" in doc["techniques"][n] for n in names):        # ringos; not Linux's nanobench
        t.add_row("compute MIPS", *("–" if "mips" not in doc["techniques"][n] else
                                    "? (too fast to time, see below)" if doc["techniques"][n]["mips"] is None
                                    else f"{doc['techniques'][n]['mips']:.2f}" for n in names), "")
        t.add_row("probe: virtualization visible",
                  *("–" if "probe_visible" not in doc["techniques"][n] else
                    "yes" if doc["techniques"][n]["probe_visible"] else "no" for n in names), "")
    return t


def notes(doc: dict) -> list[str]:
    """Lines printed under the table: why a figure is missing."""
    lines = [f"{name}: compute MIPS not measured: {entry.get('mips_note', 'no figure')}"
             for name, entry in doc["techniques"].items() if "mips" in entry and entry["mips"] is None]
    for name, entry in doc["techniques"].items():
        lines += [f"{name}: {bench} not measured: {why}" for bench, why in entry.get("skipped", {}).items()]
    return lines
