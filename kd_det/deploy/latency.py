"""One timing of one model in one format, run as a file in its own process:

    python kd_det/deploy/latency.py '{"format": "onnx", "model": "x.onnx", ...}'

prints {"latencies_s", "load_s", "peak_rss_mb", "detections", "imported"} as JSON. Run as
a file (not ``-m kd_det...``), it imports kd_det and Detectron2 only for eager, and torch
not for ONNX, so the peak RSS of an export is that of a deployment. The spec's keys:
format (eager, torchscript, onnx), model (the exported file; for eager a config file),
weights (eager only), image (a saved .npy (3, H, W) float32 at the model's input size),
threads, warmup, iters.
"""
import json
import resource
import sys
import time

import numpy as np


def _eager(config_file: str, weights: str, threads: int):
    import torch

    from kd_det.benchmarks.detection import load_cfg
    from kd_det.deploy import deployable_model
    from kd_det.deploy.tracing import boxes_scores_classes

    torch.set_num_threads(threads)
    model, _ = deployable_model(load_cfg(config_file), weights, config_file)

    def run(image):
        with torch.no_grad():
            return boxes_scores_classes(model, [{"image": torch.from_numpy(image)}])
    return run


def _exported(path: str, threads: int):
    from runtime import load_exported, onnx_session  # this folder, not the kd_det package

    if path.endswith(".onnx"):
        session = onnx_session(path, threads)
        return lambda image: session.run(None, {"image": image})
    import torch

    torch.set_num_threads(threads)
    run = load_exported(path, threads)
    return lambda image: run(torch.from_numpy(image))


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM, which starts afresh at exec; Linux's
    ru_maxrss keeps the parent's at fork, which would give every format the parent's."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def measure(spec):
    t0 = time.perf_counter()
    if spec["format"] == "eager":
        run = _eager(spec["model"], spec["weights"], spec["threads"])
    else:
        run = _exported(spec["model"], spec["threads"])
    load_s = time.perf_counter() - t0
    image = np.load(spec["image"])
    for _ in range(spec["warmup"]):
        run(image)
    latencies = []
    for _ in range(spec["iters"]):
        t0 = time.perf_counter()
        out = run(image)
        latencies.append(time.perf_counter() - t0)
    return {"latencies_s": latencies, "load_s": load_s, "detections": len(out[1]),
            "peak_rss_mb": peak_rss_mb(),
            "imported": [m for m in ("torch", "detectron2", "kd_det") if m in sys.modules]}


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))
