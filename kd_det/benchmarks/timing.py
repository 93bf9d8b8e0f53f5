"""Timing on a shared machine: round-robin samples, so that a load that varies over time
weighs on every timed function alike."""
import statistics
import time
from typing import Callable, Dict, List, Optional

__all__ = ["interleaved_times", "median_time"]


def interleaved_times(
    fns: Dict[str, Callable[[], object]],
    warmup: int = 2,
    repeats: int = 10,
    sync: Optional[Callable[[], object]] = None,
) -> Dict[str, List[float]]:
    """Wall-clock seconds of each of `fns` over `repeats` rounds after `warmup` untimed ones.

    Every round calls every function once; the order rotates from round to round, so that
    neither other jobs on the machine nor the caches left by the previous call favour one
    function. `sync` (e.g. torch.cuda.synchronize) runs before and after each timed call.
    """
    names = list(fns)
    times = {n: [] for n in names}
    for r in range(warmup + repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            if sync is not None:
                sync()
            t0 = time.perf_counter()
            fns[name]()
            if sync is not None:
                sync()
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def median_time(fn: Callable[[], object], warmup: int = 2, repeats: int = 10) -> float:
    """Median wall-clock seconds of `fn()` after `warmup` untimed calls."""
    return statistics.median(interleaved_times({"fn": fn}, warmup, repeats)["fn"])
