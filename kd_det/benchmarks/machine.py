"""What a benchmark's results depend on: the machine that ran it, and the code."""
import os
import platform
import resource
import subprocess
import sys
from typing import Dict, Optional

import torch

__all__ = ["code_version", "cpu_model", "machine_info", "peak_rss_mb"]


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


def code_version(root: str = "") -> Dict[str, Optional[object]]:
    """{"commit", "tree_clean"} of the git checkout at `root` (default: kd_det's) that
    produced a result, both None outside one: a number is only comparable with the code it
    came from. Untracked files do not make the tree dirty (outputs live there)."""
    root = root or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def git(*args):
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                              timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "tree_clean": None}
    if head.returncode != 0 or status.returncode != 0:
        return {"commit": None, "tree_clean": None}
    return {"commit": head.stdout.strip(), "tree_clean": not status.stdout.strip()}
