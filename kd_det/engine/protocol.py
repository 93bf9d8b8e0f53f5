"""The teacher / baseline student / distilled student protocol shared by `make demo` and
tools/bench_accuracy.py: cached training stages, evaluation, CPU inference timing."""
import hashlib
import json
import logging
import os
import sys
import time
from typing import Dict, List, Optional

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, get_cfg
from detectron2.data import build_detection_test_loader
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from ..config import add_kd_config
from ..utils.reporting import bar_chart, mean_spread, median_time, save_json
from .trainer import KDTrainer

__all__ = ["load_cfg", "run_stage", "inference_seconds_per_image", "summarize", "compare",
           "write_report", "format_table",
           "add_run_arguments", "apply_run_arguments", "role_configs"]

logger = logging.getLogger("kd_det.protocol")


def load_cfg(path: str, opts: Optional[List] = None) -> CfgNode:
    cfg = get_cfg()
    add_kd_config(cfg)
    cfg.merge_from_file(path)
    cfg.merge_from_list([str(x) if not isinstance(x, str) else x for x in (opts or [])])
    return cfg


def _fingerprint(cfg: CfgNode) -> str:
    """Hash of the config; a plain detector's ignores the KD node, so that adding KD keys
    does not retrain finished teachers and baselines."""
    cfg = cfg.clone()
    cfg.defrost()
    if cfg.MODEL.META_ARCHITECTURE != "DistillRCNN":
        del cfg["KD"]
    return hashlib.sha1(cfg.dump().encode()).hexdigest()[:12]


def _bbox(results: Dict) -> Dict[str, float]:
    res = results.get("bbox", results)
    return {"AP": float(res["AP"]), "AP50": float(res["AP50"])}


def _log_to(output_dir: str) -> None:
    """Send this stage's logs to `output_dir`/log.txt only (not to the previous stages'
    files) and to the console once, however many stages run in this process."""
    for name in ("detectron2", "kd_det"):
        named = logging.getLogger(name)
        for h in [h for h in named.handlers if getattr(h, "stream", None) is not sys.stdout]:
            named.removeHandler(h)
        setup_logger(output_dir, name=name, configure_stdout=not named.handlers)


def run_stage(cfg: CfgNode, output_dir: str) -> Dict:
    """Train `cfg` into `output_dir` and evaluate it on DATASETS.TEST, unless a finished
    run of the very same config is already there (re-running reuses finished stages); an
    interrupted run of the same config resumes from its last checkpoint."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.OUTPUT_DIR = output_dir
    cfg.freeze()
    done = os.path.join(output_dir, "stage.json")
    fp = _fingerprint(cfg)
    if os.path.isfile(done):
        with open(done) as f:
            cached = json.load(f)
        if cached.get("fingerprint") == fp:
            logger.info("Reusing finished stage %s", output_dir)
            return cached
    os.makedirs(output_dir, exist_ok=True)
    _log_to(output_dir)
    started = os.path.join(output_dir, "fingerprint.txt")
    resume = (os.path.isfile(os.path.join(output_dir, "last_checkpoint"))
              and os.path.isfile(started) and open(started).read() == fp)
    with open(os.path.join(output_dir, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    with open(started, "w") as f:
        f.write(fp)
    t0 = time.perf_counter()
    # Same seed -> same initial student in the baseline and the distilled run.
    seed_all_rng(cfg.SEED)
    trainer = KDTrainer(cfg)
    trainer.resume_or_load(resume=resume)
    results = trainer.train()
    stage = {
        "fingerprint": fp,
        "train_seconds": time.perf_counter() - t0,
        "weights": os.path.join(output_dir, "model_final.pth"),
        **_bbox(results),
    }
    save_json(done, stage)
    return stage


@torch.no_grad()
def inference_seconds_per_image(cfg: CfgNode, weights: str, n_images: int = 20) -> float:
    """Median CPU wall-clock per image (batch 1) of the model in `cfg` with `weights`,
    over DATASETS.TEST[0]; for DistillRCNN this is the student alone."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    model = KDTrainer.build_model(cfg).eval()
    DetectionCheckpointer(model).load(weights)
    loader = build_detection_test_loader(cfg, cfg.DATASETS.TEST[0])
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) >= n_images:
            break
    it = iter(range(10**9))

    def one():
        model(batches[next(it) % len(batches)])

    return median_time(one, warmup=3, repeats=len(batches))


def summarize(per_seed: Dict[str, List[Dict]]) -> Dict:
    """{model: [stage per seed]} -> {model: {"AP": [...], "AP50": [...], mean/std}}."""
    out = {}
    for name, stages in per_seed.items():
        out[name] = {
            "AP": [s["AP"] for s in stages],
            "AP50": [s["AP50"] for s in stages],
            "AP_stats": mean_spread([s["AP"] for s in stages]),
            "AP50_stats": mean_spread([s["AP50"] for s in stages]),
            "train_seconds": [s["train_seconds"] for s in stages],
        }
    return out


# The paper's ablation (Chen et al., Table 5), as KD.* overrides of the full recipe.
ABLATIONS = {
    "unweighted_soft_ce": ["KD.RPN.BG_WEIGHT", 1.0, "KD.ROI.BG_WEIGHT", 1.0],
    "plain_l2_to_teacher": ["KD.RPN.REG_MODE", "l2", "KD.ROI.REG_MODE", "l2"],
    "hint_without_adapter": ["KD.HINT.ADAPTER", "none"],
    "hint_only": ["KD.RPN.ENABLED", False, "KD.ROI.ENABLED", False],
    "soft_ce_only": ["KD.HINT.ENABLED", False, "KD.RPN.REG_MODE", "none",
                     "KD.ROI.REG_MODE", "none"],
    "bounded_reg_only": ["KD.HINT.ENABLED", False, "KD.RPN.MU", 1.0, "KD.ROI.MU", 1.0],
}


def _stage_worker(cfg: CfgNode, output_dir: str) -> Dict:
    torch.set_num_threads(1)
    return run_stage(cfg, output_dir)


def _run_stages(stages, jobs: int) -> List[Dict]:
    if jobs <= 1:
        return [run_stage(cfg, out) for cfg, out in stages]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_stage_worker, cfg, out) for cfg, out in stages]
        return [f.result() for f in futures]


def compare(
    configs: Dict[str, str],
    output_dir: str,
    seeds: List[int],
    opts: Optional[Dict[str, List]] = None,
    ablations: Optional[Dict[str, List]] = None,
    ablation_seeds: Optional[List[int]] = None,
    timing_images: int = 20,
    jobs: int = 1,
) -> Dict:
    """Teacher (trained once), baseline student and distilled student (per seed), the
    ablations, and CPU inference time of teacher and student.

    configs: {"teacher": yaml, "student": yaml, "kd": yaml}; opts: extra KEY VALUE lists
    per role (e.g. a shorter schedule). The student stages run `jobs` processes at a time
    (one torch thread each when jobs > 1). Returns the results dict (see
    tools/bench_accuracy).
    """
    opts = opts or {}
    teacher_cfg = load_cfg(configs["teacher"], opts.get("teacher"))
    teacher = run_stage(teacher_cfg, os.path.join(output_dir, "teacher"))

    def kd_cfg(seed, extra):
        return load_cfg(configs["kd"], list(opts.get("kd", [])) + [
            "KD.TEACHER.CONFIG_FILE", configs["teacher"],
            "KD.TEACHER.WEIGHTS", teacher["weights"], "SEED", seed] + list(extra))

    jobs_list = []  # (group, name, cfg, output dir): independent, run `jobs` at a time
    for seed in seeds:
        student_cfg = load_cfg(configs["student"], list(opts.get("student", [])) + ["SEED", seed])
        jobs_list.append(("runs", "baseline", student_cfg,
                          os.path.join(output_dir, f"baseline_s{seed}")))
        jobs_list.append(("runs", "kd", kd_cfg(seed, []), os.path.join(output_dir, f"kd_s{seed}")))
    for name, extra in (ablations or {}).items():
        for seed in ablation_seeds or seeds[:1]:
            jobs_list.append(("ablation", name, kd_cfg(seed, extra),
                              os.path.join(output_dir, f"{name}_s{seed}")))
    stages = _run_stages([(c, d) for _, _, c, d in jobs_list], jobs)
    runs = {"baseline": [], "kd": []}
    ablation_runs = {}
    for (group, name, _, _), stage in zip(jobs_list, stages):
        (runs if group == "runs" else ablation_runs).setdefault(name, []).append(stage)
    results = summarize({"teacher": [teacher], **runs})
    results["ablation"] = summarize(ablation_runs)
    t, b, k = (results[n]["AP50_stats"]["mean"] for n in ("teacher", "baseline", "kd"))
    results["gap_closed_AP50"] = (k - b) / (t - b) if t != b else float("nan")
    t, b, k = (results[n]["AP_stats"]["mean"] for n in ("teacher", "baseline", "kd"))
    results["gap_closed_AP"] = (k - b) / (t - b) if t != b else float("nan")
    student_cfg = load_cfg(configs["student"], opts.get("student"))
    results["speed"] = {
        "teacher_s_per_img": inference_seconds_per_image(
            teacher_cfg, teacher["weights"], timing_images),
        "student_s_per_img": inference_seconds_per_image(
            student_cfg, runs["baseline"][0]["weights"], timing_images),
        "torch_threads": torch.get_num_threads(),
    }
    results["speed"]["student_speedup"] = (
        results["speed"]["teacher_s_per_img"] / results["speed"]["student_s_per_img"])
    return results


def write_report(results: Dict, json_path: str, png_path: str, title: str) -> None:
    """results JSON + a PNG: AP and AP50 of every model, inference time of both sizes."""
    save_json(json_path, results)
    models = ["teacher", "baseline", "kd"] + list(results.get("ablation", {}))
    groups = {m: {} for m in ("AP", "AP50")}
    for name in models:
        src = results[name] if name in results else results["ablation"][name]
        for metric in groups:
            groups[metric][name] = src[metric]
    sp = results["speed"]
    groups["CPU s / image"] = {"teacher": [sp["teacher_s_per_img"]],
                               "student": [sp["student_s_per_img"]]}
    bar_chart(png_path, groups, ylabel={"AP": "COCO-style AP", "AP50": "AP@0.5",
                                        "CPU s / image": "seconds"}, title=title)


def format_table(results: Dict) -> str:
    """A Markdown table of the comparison (mean +- std over seeds)."""
    lines = ["| model | AP50 | AP | runs |", "|---|---|---|---|"]
    rows = [(n, results[n]) for n in ("teacher", "baseline", "kd")]
    rows += [(f"kd: {n}", r) for n, r in results.get("ablation", {}).items()]
    for name, r in rows:
        a50, ap = r["AP50_stats"], r["AP_stats"]
        lines.append(f"| {name} | {a50['mean']:.1f} ± {a50['std']:.1f} | "
                     f"{ap['mean']:.1f} ± {ap['std']:.1f} | {a50['n']} |")
    sp = results["speed"]
    lines.append("")
    lines.append(f"Gap closed (AP50): {results['gap_closed_AP50']:.2f}; (AP): "
                 f"{results['gap_closed_AP']:.2f}. CPU inference ({sp['torch_threads']} "
                 f"threads, batch 1): teacher {sp['teacher_s_per_img'] * 1000:.0f} ms/img, "
                 f"student {sp['student_s_per_img'] * 1000:.0f} ms/img "
                 f"({sp['student_speedup']:.2f}x faster).")
    return "\n".join(lines)


def role_configs(folder: str) -> Dict[str, str]:
    """{"teacher", "student", "kd"} -> `<folder>/<role>.yaml`, the layout of configs/builtin
    and configs/BCCD."""
    return {role: os.path.join(folder, f"{role}.yaml") for role in ("teacher", "student", "kd")}


def add_run_arguments(parser) -> None:
    """--threads / --jobs, shared by tools/demo.py and tools/bench_accuracy.py."""
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (default: all cores); use 1 on a busy machine, "
                             "where OpenMP threads competing for cores slow training many-fold")
    parser.add_argument("--jobs", type=int, default=1,
                        help="student trainings run in parallel (1 torch thread each)")


def apply_run_arguments(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
