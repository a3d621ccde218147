"""A PNG of a load benchmark: latency (p50, p99) and throughput per concurrency.

matplotlib is an optional extra (``pip install 'layerserve[plot]'``); nothing here touches
pyplot's global state, so plotting works in threads and without a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from layerserve.errors import LayerserveError
from layerserve.loadgen import Run

INSTALL_HINT = "pip install 'layerserve[plot]'"
FIGURE_INCHES = (10.0, 4.0)
DPI = 100


class PlottingUnavailable(LayerserveError):
    """matplotlib, needed for plots, is not installed."""


def require_matplotlib() -> None:
    """Raise ``PlottingUnavailable`` naming the extra to install when matplotlib is missing."""
    try:
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except ImportError as exc:
        raise PlottingUnavailable(
            f"--plot needs matplotlib, which is not installed: {INSTALL_HINT} "
            f"(or pip install matplotlib)"
        ) from exc


def figure(runs: Sequence[Run], title: str) -> Any:
    """A matplotlib Figure against concurrency, one point per run: latency p50 and p99
    (left); requests/s, and samples/s on its own scale when a request holds several rows
    (right)."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ordered = sorted(runs, key=lambda r: r.concurrency)
    levels = [r.concurrency for r in ordered]
    fig = Figure(figsize=FIGURE_INCHES, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    latency, throughput = fig.subplots(1, 2)
    for q in (50, 99):  # a level with no latency is left out of the line
        values = [r.percentile(q) for r in ordered]
        kept = [(level, v) for level, v in zip(levels, values, strict=True) if v is not None]
        latency.plot([k[0] for k in kept], [k[1] for k in kept], marker="o", label=f"p{q}")
    latency.set(xlabel="concurrency", ylabel="latency (ms)", title="latency")
    latency.set_ylim(bottom=0)
    latency.legend()
    throughput.plot(levels, [r.rps for r in ordered], marker="o", label="requests/s")
    throughput.set(xlabel="concurrency", ylabel="requests/s", title="throughput")
    throughput.set_ylim(bottom=0)
    rows = {r.batch for r in ordered}
    if rows != {1}:  # samples/s differ from requests/s: their own scale, on the right
        samples = throughput.twinx()
        samples.plot(
            levels, [r.rps * r.batch for r in ordered], marker="s", color="C1", label="samples/s"
        )
        samples.set(ylabel="samples/s")
        samples.set_ylim(bottom=0)
        samples.legend(loc="lower right")
    throughput.legend(loc="lower left")
    for axes in (latency, throughput):
        axes.set_xscale("log", base=2)
        axes.set_xticks(levels, [str(level) for level in levels])
        axes.minorticks_off()
        axes.grid(True, alpha=0.3)
    fig.suptitle(title)
    return fig


def write_png(runs: Sequence[Run], path: Path, title: str) -> Path:
    """Draw ``figure(runs, title)`` into a PNG file of FIGURE_INCHES x DPI pixels."""
    fig = figure(runs, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path
