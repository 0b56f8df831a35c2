"""A PNG bar chart of a bench run (matplotlib, the optional ``plot`` extra)."""

from __future__ import annotations

import math


class PlotUnavailableError(RuntimeError):
    """matplotlib is not installed."""


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailableError(
            "--plot needs matplotlib, which is not installed: pip install 'graphc[plot]' "
            "(or pip install matplotlib)"
        ) from None
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def plot(result, path) -> None:
    """One panel per measured workload: median time of each implementation, log scale."""
    plt = _pyplot()
    measured = [w for w in result.workloads if any(i.median_s for i in w.impls)]
    if not measured:
        raise ValueError("nothing was measured: there is no figure to plot")
    cols = min(3, len(measured))
    nrows = math.ceil(len(measured) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 3.6 * nrows), squeeze=False)
    scale, unit = 1e3, "ms"
    for ax, w in zip(axes.flat, measured):
        if w.unit == "us":
            scale, unit = 1e6, "us"
        else:
            scale, unit = 1e3, "ms"
        impls = [i for i in w.impls if i.median_s]
        names = [i.name.replace("graphc ", "gc ") for i in impls]
        values = [i.median_s * scale for i in impls]
        colors = ["tab:orange" if i.name == w.baseline else
                  "tab:blue" if i.family == "graphc" else "tab:gray" for i in impls]  # fmt: skip
        bars = ax.barh(range(len(impls)), values, color=colors)
        ax.set_yticks(range(len(impls)), names, fontsize=8)
        ax.invert_yaxis()
        log = max(values) / min(values) > 30  # a linear axis hides the small bars then
        if log:
            from matplotlib.ticker import NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"median {unit}" + (" (log scale)" if log else ""), fontsize=8)
        ax.set_title(f"{w.id} {w.title}", fontsize=9)
        for b, v in zip(bars, values):
            ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f" {v:.3g}", va="center",
                    fontsize=7)  # fmt: skip
    for ax in list(axes.flat)[len(measured) :]:
        ax.axis("off")
    m = result.machine
    fig.suptitle(f"graphc bench ({result.options['target']}): {m['cpu']}, {m['cores']} cores, "
                 f"graphc {m['graphc']}", fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
