"""CPU inference speed of a teacher and its student, eager and exported: each (model,
format, threads) timed in its own process (kd_det/deploy/latency.py), one after the
other, so that peak RSS is that format's alone and no two timings share the cores."""
import json
import os
import statistics
import subprocess
import sys
from typing import Dict, List, Sequence

import cv2
import numpy as np
import torch

from ..deploy import deployable_model, export_deployable
from ..deploy.images import load_model_input
from ..deploy.wrapper import ExportedDetector, exported_eval_config
from ..engine.export import _build_yacs_student, student_config
from .detection import load_cfg
from .report import Bars

__all__ = ["FORMATS", "bench_image", "prepare", "time_one", "run_rows", "summarise",
           "headline", "panels", "deploy_table", "exported_ap"]

FORMATS = ("eager", "torchscript", "onnx")
_LATENCY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deploy",
                        "latency.py")


def bench_image(path: str, height: int = 480, width: int = 640, seed: int = 0) -> str:
    """A PNG of noise with bright boxes, resized by each model to its own input size."""
    rng = np.random.RandomState(seed)
    img = rng.randint(0, 120, (height, width, 3)).astype(np.uint8)
    for _ in range(12):
        w, h = rng.randint(20, 160, 2)
        x, y = rng.randint(0, width - w), rng.randint(0, height - h)
        img[y:y + h, x:x + w] = rng.randint(120, 255, 3)
    cv2.imwrite(path, img)
    return path


def _random_weights(config_file: str, path: str) -> str:
    """Random weights for the config's model (its student, for a DistillRCNN config):
    inference speed does not depend on trained values, so the benchmark needs none."""
    cfg = load_cfg(config_file)
    if cfg.MODEL.META_ARCHITECTURE == "DistillRCNN":
        cfg = student_config(cfg)
    torch.manual_seed(0)
    torch.save({"model": _build_yacs_student(cfg).state_dict()}, path)
    return path


def prepare(name: str, config_file: str, weights: str, work_dir: str, image_png: str,
            formats: Sequence[str]) -> Dict:
    """Export `name` in each exported format (checked against eager on the bench image)
    and save that image at the model's input size; what time_one needs."""
    folder = os.path.join(work_dir, name)
    os.makedirs(folder, exist_ok=True)
    weights = weights or _random_weights(config_file, os.path.join(folder, "random.pth"))
    cfg = load_cfg(config_file)
    out = {"config_file": config_file, "weights": weights, "files": {"eager": config_file}}
    for fmt in formats:
        if fmt != "eager":
            out["files"][fmt] = export_deployable(cfg, weights, folder, fmt, [image_png],
                                                  overwrite=True, name=name)["model"]
    _, model_cfg = deployable_model(cfg, weights, config_file)
    image = load_model_input(image_png, model_cfg)[0]
    out["image"] = os.path.join(folder, "image.npy")
    out["input_hw"] = list(image.shape[-2:])
    np.save(out["image"], image.numpy())
    return out


def exported_ap(model: Dict, dataset: str, output_dir: str) -> Dict[str, Dict[str, float]]:
    """{format: {AP, AP50}} of `model` (prepare's) on `dataset`, eager and each export
    through Detectron2's evaluator, as tools/train_net.py --eval-only measures them."""
    from ..engine import KDTrainer  # the trainer's evaluator choice (COCO / VOC)

    cfg = load_cfg(model["config_file"])
    eager, eager_cfg = deployable_model(cfg, model["weights"], model["config_file"])
    cfg.defrost()  # the test loader's checks (KD.*) with the student's own test resize
    cfg.INPUT.MIN_SIZE_TEST = eager_cfg.INPUT.MIN_SIZE_TEST
    cfg.INPUT.MAX_SIZE_TEST = eager_cfg.INPUT.MAX_SIZE_TEST
    cfg.DATASETS.TEST = (dataset,)
    cfg.OUTPUT_DIR = output_dir
    out = {}
    for fmt, path in model["files"].items():
        if fmt == "eager":
            res = KDTrainer.test(cfg, eager.eval())
        else:
            res = KDTrainer.test(exported_eval_config(cfg, path), ExportedDetector(path))
        out[fmt] = {k: float(res["bbox"][k]) for k in ("AP", "AP50")}
    return out


def time_one(model: Dict, fmt: str, threads: int, warmup: int, iters: int) -> Dict:
    """latency.py in a fresh process, with `threads` for torch, OpenMP and ONNX Runtime."""
    spec = {"format": fmt, "model": model["files"][fmt], "weights": model["weights"],
            "image": model["image"], "threads": threads, "warmup": warmup, "iters": iters}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, _LATENCY, json.dumps(spec)], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"timing {fmt} of {model['files'][fmt]} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_rows(models: Dict[str, Dict], formats: Sequence[str], threads: Sequence[int],
             rounds: int, warmup: int, iters: int) -> List[Dict]:
    """Every (model, format, threads) once per round, the rounds one after the other, so
    that a load changing over time spreads over all of them; samples pooled per row."""
    keys = [(m, f, t) for t in threads for m in models for f in formats]
    runs = {k: [] for k in keys}
    for _ in range(rounds):
        for m, f, t in keys:
            runs[m, f, t].append(time_one(models[m], f, t, warmup, iters))
    rows = []
    for (m, f, t), rs in runs.items():
        rows.append({"model": m, "format": f, "threads": t,
                     **summarise([s for r in rs for s in r["latencies_s"]]),
                     "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                     "load_s": statistics.median(r["load_s"] for r in rs),
                     "detections": rs[0]["detections"],
                     "imported": rs[0]["imported"]})
    return rows


def summarise(samples: List[float]) -> Dict:
    """Median and p90 latency in ms, throughput in images/s (batch 1: 1 / mean)."""
    ms = sorted(1000 * s for s in samples)
    return {"median_ms": statistics.median(ms),
            "p90_ms": ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))],
            "throughput_ips": len(ms) / (sum(ms) / 1000), "n": len(ms)}


def headline(rows: List[Dict]) -> Dict:
    """Per thread count: teacher eager over the student's fastest export (median latency)."""
    out = {}
    for t in sorted({r["threads"] for r in rows}):
        at = {(r["model"], r["format"]): r for r in rows if r["threads"] == t}
        exports = [r for (m, f), r in at.items() if m == "student" and f != "eager"]
        if ("teacher", "eager") not in at or not exports:
            continue
        best = min(exports, key=lambda r: r["median_ms"])
        out[str(t)] = {
            "teacher_eager_ms": at["teacher", "eager"]["median_ms"],
            "student_eager_ms": at.get(("student", "eager"), {}).get("median_ms"),
            "student_best_format": best["format"], "student_best_ms": best["median_ms"],
            "teacher_eager_over_student_best": at["teacher", "eager"]["median_ms"]
            / best["median_ms"]}
    return out


def panels(rows: List[Dict]) -> List[Bars]:
    """Median latency per model and format, one panel per thread count, and peak RSS."""
    out = []
    for t in sorted({r["threads"] for r in rows}):
        out.append(Bars(f"median latency, {t} thread(s)",
                        {f"{r['model']} {r['format']}": [r["median_ms"]]
                         for r in rows if r["threads"] == t}, ylabel="ms", fmt=".0f"))
    t = min(r["threads"] for r in rows)
    out.append(Bars(f"peak RSS, {t} thread(s)",
                    {f"{r['model']} {r['format']}": [r["peak_rss_mb"]]
                     for r in rows if r["threads"] == t}, ylabel="MiB", fmt=".0f"))
    return out


def deploy_table(results: Dict) -> str:
    """The tables of results/deploy_cpu.json: latency per model, format and threads; the
    student's AP per format when it was measured."""
    lines = ["| model | format | threads | median ms | p90 ms | images/s | peak RSS MiB |",
             "|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        lines.append(f"| {r['model']} | {r['format']} | {r['threads']} | {r['median_ms']:.1f} "
                     f"| {r['p90_ms']:.1f} | {r['throughput_ips']:.1f} "
                     f"| {r['peak_rss_mb']:.0f} |")
    if results.get("student_ap"):
        lines += ["", f"| student on {results['ap_dataset']} | AP | AP50 |", "|---|---|---|"]
        lines += [f"| {fmt} | {ap['AP']:.2f} | {ap['AP50']:.2f} |"
                  for fmt, ap in results["student_ap"].items()]
    return "\n".join(lines)
