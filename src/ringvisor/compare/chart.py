"""`--chart FILE`: each nanobenchmark's host nanoseconds per iteration (log
scale) and traps per iteration, as grouped bars, one group per benchmark,
one bar per technique, native first (PNG or SVG by the suffix)."""
from __future__ import annotations

from pathlib import Path

from ringvisor.errors import ConfigError

FORMATS = (".png", ".svg")


def check_path(path: str) -> None:
    if Path(path).suffix.lower() not in FORMATS:
        raise ConfigError(f"--chart {path}: the file name must end in .png or .svg")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError("--chart needs matplotlib: .venv/bin/pip install 'ringvisor[chart]'") from None


def figure(doc: dict):
    """Two panels, one group of bars per nanobenchmark and one bar per
    technique: host ns per iteration (log scale), and traps into the monitor
    per iteration, the figure that carries over from the paper (kvm's exits
    cannot be attributed to one loop: its bars are left out and said so)."""
    import matplotlib
    matplotlib.use("Agg")                      # files only, no display
    import matplotlib.pyplot as plt
    from ringvisor.compare.report import BENCH_ORDER

    names = list(doc["techniques"])
    benches = [b for b in BENCH_ORDER
               if any(b in doc["techniques"][n]["nanobench"] for n in names)]
    width = 0.8 / max(1, len(names))
    fig, (time_ax, traps_ax) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    unattributed = []
    for i, n in enumerate(names):
        bench = doc["techniques"][n]["nanobench"]
        xs = [x + i * width for x in range(len(benches))]
        ns = [(bench.get(b) or {}).get("ns_per_iter") or 0 for b in benches]
        time_ax.bar(xs, ns, width, label=n)
        traps = [(bench.get(b) or {}).get("traps_per_iter") for b in benches]
        if all(v is None for v in traps):
            unattributed.append(n)
        traps_ax.bar(xs, [v or 0 for v in traps], width, label=n)
    traps_ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(benches))], benches)
    time_ax.set_yscale("log")
    time_ax.set_ylabel("host ns per iteration (log scale)")
    time_ax.set_title("ringvisor compare: nanobenchmarks (Adams & Agesen, ASPLOS 2006)")
    time_ax.legend()
    traps_ax.set_ylabel("traps (exits) per iteration")
    note = f"; not attributable per loop: {', '.join(unattributed)}" if unattributed else ""
    traps_ax.set_title(f"traps into the monitor per iteration{note}", fontsize="medium")
    fig.tight_layout()
    return fig


def draw(doc: dict, path: str) -> None:
    import matplotlib.pyplot as plt
    fig = figure(doc)
    try:
        fig.savefig(path)
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror}") from None
    finally:
        plt.close(fig)
