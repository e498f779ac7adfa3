"""`--chart FILE`: host nanoseconds per iteration of each nanobenchmark as
grouped bars on a log scale, one group per benchmark, one bar per
technique, native first (PNG or SVG by the suffix)."""
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


def draw(doc: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")                      # files only, no display
    import matplotlib.pyplot as plt
    from ringvisor.compare.report import BENCH_ORDER

    names = list(doc["techniques"])
    benches = [b for b in BENCH_ORDER
               if any(b in doc["techniques"][n]["nanobench"] for n in names)]
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(10, 5))
    for i, n in enumerate(names):
        bench = doc["techniques"][n]["nanobench"]
        ns = [(bench.get(b) or {}).get("ns_per_iter") or 0 for b in benches]
        ax.bar([x + i * width for x in range(len(benches))], ns, width, label=n)
    ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(benches))], benches)
    ax.set_yscale("log")
    ax.set_ylabel("host ns per iteration (log scale)")
    ax.set_title("ringvisor compare: nanobenchmarks (Adams & Agesen, ASPLOS 2006)")
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror}") from None
    finally:
        plt.close(fig)
