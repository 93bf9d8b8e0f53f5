"""Timing on a shared machine: round-robin samples, so that a load that varies over time
weighs on every timed function alike, and the process's peak memory."""
import os
import platform
import resource
import sys
import time
from typing import Callable, Dict, List, Optional

__all__ = ["interleaved_times", "peak_rss_mb", "machine_info"]


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


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes / KiB


def machine_info() -> Dict[str, object]:
    """What timings depend on: the CPU, its core count and the load on it now."""
    cpu = platform.processor()
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "load_avg_1min": os.getloadavg()[0]}
