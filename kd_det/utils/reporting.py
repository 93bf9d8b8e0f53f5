"""Results that people compare: JSON written atomically, bar charts, timings."""
import json
import os
import statistics
import tempfile
from typing import Callable, Dict, List, Optional, Sequence

from .timing import interleaved_times

__all__ = ["mean_spread", "save_json", "bar_chart", "median_time", "atomic_torch_save"]


def mean_spread(values: Sequence[float]) -> Dict[str, float]:
    """Mean and spread (sample standard deviation; 0 for one value) of per-seed numbers."""
    values = [float(v) for v in values]
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def save_json(path: str, obj) -> None:
    """Write JSON through a temporary file and rename, so a crash leaves no half file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


def bar_chart(
    path: str,
    groups: Dict[str, Dict[str, List[float]]],
    ylabel,
    title: str = "",
    series_order: Optional[List[str]] = None,
) -> None:
    """Grouped bars with error bars (std over seeds): groups[metric][series] = per-seed values.

    One subplot per metric, one bar per series; writes a PNG. `ylabel` is one label or
    a {metric: label} dict.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(groups)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        series = series_order or list(groups[metric])
        series = [s for s in series if s in groups[metric]]
        stats = [mean_spread(groups[metric][s]) for s in series]
        ax.bar(range(len(series)), [s["mean"] for s in stats],
               yerr=[s["std"] for s in stats], capsize=3, color="C0")
        ax.set_xticks(range(len(series)))
        ax.set_xticklabels(series, rotation=30, ha="right")
        ax.set_title(metric)
        ax.set_ylabel(ylabel[metric] if isinstance(ylabel, dict) else ylabel)
        for i, s in enumerate(stats):
            ax.text(i, s["mean"], f"{s['mean']:.3g}", ha="center", va="bottom", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def median_time(fn: Callable[[], object], warmup: int = 2, repeats: int = 10) -> float:
    """Median wall-clock seconds of `fn()` after `warmup` untimed calls."""
    return statistics.median(interleaved_times({"fn": fn}, warmup, repeats)["fn"])


def atomic_torch_save(obj, path: str) -> None:
    """torch.save through a temporary file and rename (no half-written checkpoints)."""
    import torch

    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)
