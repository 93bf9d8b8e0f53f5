"""What people compare: a results dict written as JSON, one PNG of chart panels beside it,
and the mean ± std cells of the Markdown tables."""
import dataclasses
import os
import statistics
from typing import Dict, List, Sequence, Tuple, Union

from ..file_io import save_json
from .machine import code_version

__all__ = ["Bars", "Curves", "save_report", "save_figure", "mean_spread", "mean_std"]


@dataclasses.dataclass
class Bars:
    """One bar per series: the mean, sample-std error bars and a dot per seed."""

    title: str
    series: Dict[str, Sequence[float]]
    ylabel: str = ""
    fmt: str = ".3g"  # of the value written above each bar
    zoom: bool = False  # y axis around the values rather than from 0 (small differences)

    def draw(self, ax) -> None:
        names = list(self.series)
        stats = [mean_spread(self.series[n]) for n in names]
        ax.bar(range(len(names)), [s["mean"] for s in stats], yerr=[s["std"] for s in stats],
               capsize=3, color=[f"C{i}" for i in range(len(names))])
        for i, (name, s) in enumerate(zip(names, stats)):
            ax.scatter([i] * len(self.series[name]), self.series[name], color="k", s=8)
            ax.text(i, s["mean"], format(s["mean"], self.fmt), ha="center", va="bottom",
                    fontsize=8)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right")
        ax.set_ylabel(self.ylabel)
        if self.zoom:
            values = [v for n in names for v in self.series[n]]
            lo, hi = min(values), max(values)
            ax.set_ylim(lo - 0.3 * (hi - lo + 1), hi + 0.2 * (hi - lo + 1))


@dataclasses.dataclass
class Curves:
    """One line per series, e.g. a validation metric over training iterations."""

    title: str
    curves: Dict[str, Tuple[Sequence[float], Sequence[float]]]
    xlabel: str = ""

    def draw(self, ax) -> None:
        for i, (name, (x, y)) in enumerate(self.curves.items()):
            ax.plot(x, y, "o-", ms=3, label=name, color=f"C{i}")
        ax.set_xlabel(self.xlabel)
        ax.legend(fontsize=8)


Panel = Union[Bars, Curves]


def save_figure(path: str, panels: List[Panel], title: str = "") -> None:
    """The panels side by side in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.75 * len(panels), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        panel.draw(ax)
        ax.set_title(panel.title)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_report(results: Dict, json_path: str, png_path: str, panels: List[Panel],
                title: str = "") -> None:
    """`results` as JSON at `json_path`, with the commit that produced it and whether the
    tree was clean (unless `results` has them already), and the chart of `panels` at
    `png_path`."""
    results = {**code_version(), **results}
    save_json(json_path, results)
    save_figure(png_path, panels, title)


def mean_spread(values: Sequence[float]) -> Dict[str, float]:
    """Mean and spread (sample standard deviation; 0 for one value) of per-seed numbers."""
    values = [float(v) for v in values]
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def mean_std(values: Sequence[float], digits: int = 1) -> str:
    """A table cell: "mean ± std" over seeds, the value alone for one seed."""
    s = mean_spread(values)
    return f"{s['mean']:.{digits}f}" + (f" ± {s['std']:.{digits}f}" if s["n"] > 1 else "")
