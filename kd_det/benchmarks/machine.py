"""What a benchmark's timings depend on, measured on the machine that ran it."""
import os
import platform
import resource
import sys
from typing import Dict

import torch

__all__ = ["cpu_model", "machine_info", "peak_rss_mb"]


def cpu_model() -> str:
    """The CPU's model name: /proc/cpuinfo on Linux, else what `platform` reports."""
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info() -> Dict[str, object]:
    """The CPU, its core count, the load on it now, and the torch build and threads."""
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "load_avg_1min": os.getloadavg()[0], "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes / KiB
