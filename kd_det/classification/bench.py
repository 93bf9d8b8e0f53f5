"""Benchmark protocol: teachers, the student alone and every KD method on the same student,
data split and schedule, over several seeds; test top-1 per seed to JSON and a bar chart.

Seed s trains teacher s; KD, FitNets and FNKD distil from teacher s, MEAL V2 from the
ensemble of teachers s and s+1 (mod the number of seeds), whose test top-1 is reported as
its own row. A run whose OUTPUT_DIR/results.json holds the same config is reused, so an
interrupted benchmark resumes where it stopped.
"""
import json
import logging
import os
import time
from typing import Dict, List, Sequence

import torch

from kd_det.utils.reporting import bar_chart, mean_spread, save_json

from .config import setup_cls_cfg
from .data import load_split
from .trainer import load_teacher, run_cls

__all__ = ["BENCH_METHODS", "ensemble_top1", "format_table", "run_benchmark"]

logger = logging.getLogger(__name__)

# row name -> config file; the order of the table and of the chart.
BENCH_METHODS = {
    "teacher": "teacher.yaml",
    "teacher ensemble (K=2)": None,
    "student alone": "student.yaml",
    "KD": "kd.yaml",
    "FitNets": "fitnets.yaml",
    "FNKD": "fnkd.yaml",
    "MEAL V2": "meal_v2.yaml",
}


def _teacher_path(root: str, seed: int) -> str:
    return os.path.join(root, f"teacher_seed{seed}", "model_final.pth")


@torch.no_grad()
def ensemble_top1(cfg, weights: Sequence[str]) -> float:
    """Test top-1 (%) of the mean softmax of the teachers in `weights`."""
    teachers = [load_teacher(cfg, w) for w in weights]
    images, labels = load_split(cfg, "test").tensors
    correct = 0
    for i in range(0, len(images), 1000):
        x = images[i:i + 1000]
        prob = torch.stack([t(x).softmax(1) for t in teachers]).mean(0)
        correct += (prob.argmax(1) == labels[i:i + 1000]).sum().item()
    return 100.0 * correct / len(images)


def _cached_or_run(cfg) -> Dict[str, float]:
    path = os.path.join(cfg.OUTPUT_DIR, "results.json")
    if os.path.isfile(path):
        with open(path) as f:
            saved = json.load(f)
        if saved.get("config") == cfg.dump() and os.path.isfile(
                os.path.join(cfg.OUTPUT_DIR, "model_final.pth")):
            logger.info("reusing %s", path)
            return saved["results"]
    return run_cls(cfg)


def run_benchmark(config_dir: str, output_root: str, json_path: str, png_path: str,
                  seeds: Sequence[int], iters: int, stage1_iters: int, command: str,
                  opts: Sequence[str] = ()) -> Dict:
    """Train every row of BENCH_METHODS for each seed; write JSON after each run."""
    if len(seeds) < 2:
        raise ValueError("--seeds: MEAL V2 needs two teachers, so give at least two seeds")
    common = ["SOLVER.MAX_ITER", str(iters), "SOLVER.CHECKPOINT_PERIOD", str(10**9), *opts]
    results: Dict[str, Dict[str, List[float]]] = {
        name: {"top1": [], "val_top1": [], "seeds": [], "seconds": []} for name in BENCH_METHODS}
    ref = setup_cls_cfg(os.path.join(config_dir, "student.yaml"), common)
    d, sol = ref.CLS.DATA, ref.SOLVER
    report = {
        "command": command,
        "hardware": "2 CPU cores shared with other jobs, 1 torch thread",
        "protocol": {
            "dataset": f"Fashion-MNIST, {d.TRAIN_SIZE or 60000 - d.VAL_SIZE} train / "
                       f"{d.VAL_SIZE} val (SPLIT_SEED {d.SPLIT_SEED}) / "
                       f"{d.TEST_SIZE or 10000} official test images",
            "schedule": f"{iters} iterations, batch {ref.DATALOADER.BATCH_SIZE}, "
                        f"{sol.OPTIMIZER} {sol.BASE_LR} {sol.LR_SCHEDULER_NAME} (short CPU "
                        f"schedule); FitNets adds {stage1_iters} hint-only stage-1 iterations",
            "teachers": "seed s trains teacher s; KD/FitNets/FNKD use teacher s, MEAL V2 "
                        "teachers s and s+1 (mod #seeds)",
            "seeds": list(seeds),
            "overrides": list(opts),
        },
        "complete": False,
        **results,
    }

    def record(name, seed, res, seconds):
        row = results[name]
        row["seeds"].append(seed)
        row["top1"].append(res["test/top1"])
        row["val_top1"].append(res.get("val/top1"))
        row["seconds"].append(round(seconds, 1))
        row.update(mean_spread(row["top1"]))
        save_json(json_path, report)
        logger.info("%s seed %d: test top-1 %.2f (%.0f s)", name, seed, res["test/top1"], seconds)

    def cfg_for(name, seed, extra=()):
        cfg_file = os.path.join(config_dir, BENCH_METHODS[name])
        out = os.path.join(output_root, f"{BENCH_METHODS[name][:-5]}_seed{seed}")
        opts_ = [*common, "SEED", str(seed), "OUTPUT_DIR", out, *extra]
        if name == "teacher":  # train the network that CLS.TEACHER (overrides included) names
            t = setup_cls_cfg(cfg_file, opts_).CLS.TEACHER
            opts_ += ["CLS.MODEL.ARCH", t.ARCH, "CLS.MODEL.WIDTHS", str(tuple(t.WIDTHS))]
        return setup_cls_cfg(cfg_file, opts_)

    for seed in seeds:
        t0 = time.perf_counter()
        res = _cached_or_run(cfg_for("teacher", seed))
        record("teacher", seed, res, time.perf_counter() - t0)
    for i, seed in enumerate(seeds):
        pair = (_teacher_path(output_root, seed),
                _teacher_path(output_root, seeds[(i + 1) % len(seeds)]))
        cfg = cfg_for("MEAL V2", seed, ["CLS.TEACHER.WEIGHTS", str(pair)])
        t0 = time.perf_counter()
        record("teacher ensemble (K=2)", seed, {"test/top1": ensemble_top1(cfg, pair)},
               time.perf_counter() - t0)
        one = ["CLS.TEACHER.WEIGHTS", str(pair[:1])]
        for name, extra in (
            ("student alone", []),
            ("KD", one),
            ("FitNets", one + ["CLS.FITNETS.STAGE1_ITERS", str(stage1_iters),
                               "SOLVER.MAX_ITER", str(iters + stage1_iters)]),
            ("FNKD", one),
            ("MEAL V2", ["CLS.TEACHER.WEIGHTS", str(pair)]),
        ):
            t0 = time.perf_counter()
            res = _cached_or_run(cfg_for(name, seed, extra))
            record(name, seed, res, time.perf_counter() - t0)
    report["complete"] = True
    save_json(json_path, report)
    bar_chart(png_path, {"Fashion-MNIST test top-1": {k: v["top1"] for k, v in results.items()}},
              ylabel="top-1 (%)", title=f"Classification KD, {len(seeds)} seeds, {iters} iters",
              series_order=list(BENCH_METHODS))
    return report


def format_table(report: Dict) -> str:
    """The README table: method, test top-1 mean +- std (n seeds), per-seed values."""
    lines = ["| method | test top-1 (%) mean ± std | per seed |", "|---|---|---|"]
    for name in BENCH_METHODS:
        row = report[name]
        if row["top1"]:
            s = mean_spread(row["top1"])
            per = ", ".join(f"{v:.2f}" for v in row["top1"])
            lines.append(f"| {name} | {s['mean']:.2f} ± {s['std']:.2f} (n={s['n']}) | {per} |")
    return "\n".join(lines)
