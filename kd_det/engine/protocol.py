"""The teacher / baseline student / distilled student protocol shared by `make demo` and
tools/bench_accuracy.py: cached training stages, evaluation, CPU inference timing."""
import hashlib
import json
import logging
import os
import sys
import time
from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.data import build_detection_test_loader
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from ..checkpoint import SafeDetectionCheckpointer
from ..config import add_kd_config
from ..modeling.backbone import add_mobilenet_config
from ..utils.reporting import mean_spread, median_time, save_json
from .trainer import KDTrainer

__all__ = ["load_cfg", "run_stage", "inference_seconds_per_image", "summarize", "compare",
           "write_report", "format_table",
           "add_run_arguments", "apply_run_arguments", "role_configs"]

logger = logging.getLogger("kd_det.protocol")


def load_cfg(path: str, opts: Optional[List] = None) -> CfgNode:
    cfg = get_cfg()
    add_kd_config(cfg)
    add_mobilenet_config(cfg)
    cfg.merge_from_file(path, allow_unsafe=False)
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
    SafeDetectionCheckpointer(model).load(weights)
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


def evaluate_weights(cfg: CfgNode, weights: str, dataset: str, cache_dir: str) -> Dict:
    """AP / AP50 of `weights` (built from `cfg`) on `dataset`, cached in `cache_dir`."""
    path = os.path.join(cache_dir, f"eval_{dataset}.json")
    fp = hashlib.sha1(f"{_fingerprint(cfg)}{weights}{os.path.getmtime(weights)}".encode())
    fp = fp.hexdigest()[:12]
    if os.path.isfile(path):
        with open(path) as f:
            cached = json.load(f)
        if cached.get("fingerprint") == fp:
            return cached
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATASETS.TEST = (dataset,)
    model = KDTrainer.build_model(cfg)
    SafeDetectionCheckpointer(model).load(weights)
    out = {"fingerprint": fp, **_bbox(KDTrainer.test(cfg, model))}
    save_json(path, out)
    return out


@torch.no_grad()
def backbone_gflops(cfg: CfgNode) -> float:
    """GFLOPs (fvcore, one multiply-add = 1) of the backbone (+FPN) of `cfg`'s detector at
    the test resolution of a 4:3 image, padded as Detectron2 pads it."""
    from detectron2.modeling import build_backbone
    from fvcore.nn import FlopCountAnalysis

    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    backbone = build_backbone(cfg).eval()
    h = cfg.INPUT.MIN_SIZE_TEST
    w = min(round(h * 4 / 3), cfg.INPUT.MAX_SIZE_TEST)
    div = max(backbone.size_divisibility, 1)
    x = torch.zeros(1, 3, -(-h // div) * div, -(-w // div) * div)
    flops = FlopCountAnalysis(backbone, x)
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    return flops.total() / 1e9


def read_curve(output_dir: str) -> List[Dict]:
    """[{iter, seconds, AP, AP50, AP75}] of a stage trained with TEST.EVAL_PERIOD > 0."""
    path = os.path.join(output_dir, "curve.json")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        rows = json.load(f)
    return [{"iter": r["iter"], "seconds": r["seconds"], "AP": r["bbox/AP"],
             "AP50": r["bbox/AP50"], "AP75": r.get("bbox/AP75")} for r in rows]


def read_diagnostics(output_dir: str) -> Dict[str, Dict[str, float]]:
    """Mean, first and last value of every kd_diag/* scalar a stage logged."""
    path = os.path.join(output_dir, "metrics.json")
    series: Dict[str, List[float]] = {}
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                for k, v in row.items():
                    if k.startswith("kd_diag/"):
                        series.setdefault(k[len("kd_diag/"):], []).append(float(v))
    return {k: {"mean": sum(v) / len(v), "first": v[0], "last": v[-1], "n": len(v)}
            for k, v in sorted(series.items())}


def time_to_accuracy(curve: List[Dict], baseline_curve: List[Dict],
                     metric: str = "AP50") -> Optional[float]:
    """Training wall-clock at which `curve` first reaches the baseline's final value, as a
    fraction of the baseline's total; None when it never does."""
    if not curve or not baseline_curve:
        return None
    target, total = baseline_curve[-1][metric], baseline_curve[-1]["seconds"]
    hit = next((r for r in curve if r[metric] >= target), None)
    return hit["seconds"] / total if hit else None


def summarize(stages: List[Dict]) -> Dict:
    """[stage per seed] -> {"AP": [...], "AP50": [...], mean / std, train_seconds}."""
    return {
        "AP": [s["AP"] for s in stages],
        "AP50": [s["AP50"] for s in stages],
        "AP_stats": mean_spread([s["AP"] for s in stages]),
        "AP50_stats": mean_spread([s["AP50"] for s in stages]),
        "train_seconds": [s.get("train_seconds") for s in stages],
    }


def _gap_closed(results: Dict, row: str, metric: str) -> float:
    t, b, k = (results[n][f"{metric}_stats"]["mean"] for n in ("teacher", "baseline", row))
    return (k - b) / (t - b) if t != b else float("nan")


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


_ROLE = {"baseline": "student", "kd": "kd", "kd_best": "kd_best"}


def stage_cfg(configs: Dict[str, str], row: str, seed: int, split: Tuple[str, str],
              teacher_weights: str, selection: bool, opts=None, diagnostics_period: int = 0,
              extra=()) -> CfgNode:
    """The config of one protocol stage: `row` ("baseline", "kd", "kd_best") trained on
    split[0] and evaluated on split[1]. Selection stages evaluate every TEST.EVAL_PERIOD
    (the learning curve) and log KD diagnostics; test stages evaluate once, at the end."""
    pre = []
    if row != "baseline":
        pre = ["KD.TEACHER.CONFIG_FILE", configs["teacher"], "KD.TEACHER.WEIGHTS", teacher_weights]
    if not selection:
        pre += ["TEST.EVAL_PERIOD", 0, "KD.TEACHER.EVAL_BEFORE_TRAIN", False]
    elif row != "baseline" and diagnostics_period:
        pre += ["KD.DIAGNOSTICS_PERIOD", diagnostics_period]
    pre += ["DATASETS.TRAIN", f"('{split[0]}',)", "DATASETS.TEST", f"('{split[1]}',)"]
    return load_cfg(configs[_ROLE[row]], pre + list(opts or []) + ["SEED", seed] + list(extra))


def compare(
    configs: Dict[str, str],
    output_dir: str,
    seeds: List[int],
    test_split: Tuple[str, str],
    val_split: Optional[Tuple[str, str]] = None,
    opts: Optional[Dict[str, List]] = None,
    ablations: Optional[Dict[str, List]] = None,
    diagnostics_period: int = 0,
    timing_images: int = 20,
    jobs: int = 1,
    selection_only: bool = False,
) -> Dict:
    """Teacher (trained once, by its own config), then baseline, Chen's recipe (`kd`) and
    kd_det's best recipe (`kd_best`, when configs has it):

    - selection runs, when `val_split` = (train, val) datasets is given: seed seeds[0],
      validation AP logged during training (the learning curves), plus `ablations`
      ({name: KD.* overrides of Chen's recipe}: the options one at a time, the search
      kd_best is chosen by); the KD runs log KD diagnostics every `diagnostics_period`
      iterations;
    - test runs on `test_split` = (train, test), every seed, no evaluation before the end.

    The test runs of the rows are reported as per-seed lists; the teacher's AP is its
    weights' AP on the test dataset. opts: extra KEY VALUE lists per role (e.g. a shorter
    schedule). Stages run `jobs` at a time (one torch thread each when jobs > 1) and are
    cached and resumable; `selection_only` stops after the selection runs (a benchmark
    split over sessions reports its validation part first).
    """
    opts = opts or {}
    rows = [r for r in ("baseline", "kd", "kd_best") if r in configs or r == "baseline"]
    teacher_cfg = load_cfg(configs["teacher"], opts.get("teacher"))
    teacher = run_stage(teacher_cfg, os.path.join(output_dir, "teacher"))

    def cfg_for(row, seed, split, extra=()):
        return stage_cfg(configs, row, seed, val_split if split == "val" else test_split,
                         teacher["weights"], split == "val", opts.get(_ROLE[row]),
                         diagnostics_period, extra)

    jobs_list = []  # (group, name, cfg, dir): independent, selection runs first
    if val_split:
        for row in rows:
            jobs_list.append(("val", row, cfg_for(row, seeds[0], "val"),
                              os.path.join(output_dir, "val", f"{row}_s{seeds[0]}")))
        for name, extra in (ablations or {}).items():
            jobs_list.append(("ablation", name, cfg_for("kd", seeds[0], "val", extra),
                              os.path.join(output_dir, "val", f"{name}_s{seeds[0]}")))
    for seed in [] if selection_only else seeds:
        for row in rows:
            jobs_list.append(("test", row, cfg_for(row, seed, "test"),
                              os.path.join(output_dir, "test", f"{row}_s{seed}")))
    stages = _run_stages([(c, d) for _, _, c, d in jobs_list], jobs)

    results = {"protocol": {
        "selection": (f"train {val_split[0]} -> validate {val_split[1]}, seed {seeds[0]}"
                      if val_split else "none"),
        "test": f"train {test_split[0]} -> test {test_split[1]}, seeds {list(seeds)}",
        "teacher": f"{configs['teacher']}, trained once on its own DATASETS.TRAIN",
    }}
    by_group: Dict[str, Dict[str, List]] = {"val": {}, "ablation": {}, "test": {}}
    for (group, name, _, d), stage in zip(jobs_list, stages):
        by_group[group].setdefault(name, []).append(dict(stage, dir=d))
    if not selection_only:
        results["teacher"] = summarize([evaluate_weights(
            teacher_cfg, teacher["weights"], test_split[1], os.path.join(output_dir, "teacher"))])
        results["teacher"]["train_seconds"] = [teacher["train_seconds"]]
        for row in rows:
            results[row] = summarize(by_group["test"][row])
        for row in rows[1:]:
            results[f"gap_closed_AP50_{row}"] = _gap_closed(results, row, "AP50")
            results[f"gap_closed_AP_{row}"] = _gap_closed(results, row, "AP")
        # Today's layout: gap_closed_AP50 / gap_closed_AP are Chen's recipe's.
        results["gap_closed_AP50"] = results.get("gap_closed_AP50_kd")
        results["gap_closed_AP"] = results.get("gap_closed_AP_kd")
    if val_split:
        val = {"teacher": summarize([teacher]), **{row: summarize(by_group["val"][row])
                                                    for row in rows}}
        results["validation"] = val
        results["validation_gap_closed"] = {
            row: {m: _gap_closed(val, row, m) for m in ("AP50", "AP")} for row in rows[1:]}
        results["ablation"] = {name: summarize(st) for name, st in by_group["ablation"].items()}
        results["curves"] = {"teacher": read_curve(os.path.join(output_dir, "teacher"))}
        for row in rows:
            results["curves"][row] = read_curve(by_group["val"][row][0]["dir"])
        results["time_to_accuracy"] = {
            row: time_to_accuracy(results["curves"][row], results["curves"]["baseline"])
            for row in rows[1:]}
        results["diagnostics"] = {row: read_diagnostics(by_group["val"][row][0]["dir"])
                                  for row in rows[1:]}
    if "kd_best" in rows:
        results["kd_best_settings"] = _kd_overrides(load_cfg(configs["kd"]),
                                                    load_cfg(configs["kd_best"]))
    student_cfg = load_cfg(configs["student"], opts.get("student"))
    results["flops"] = {"teacher_backbone_gflops": backbone_gflops(teacher_cfg),
                        "student_backbone_gflops": backbone_gflops(student_cfg)}
    results["flops"]["backbone_ratio"] = (results["flops"]["teacher_backbone_gflops"]
                                          / results["flops"]["student_backbone_gflops"])
    results["speed"] = {
        "teacher_s_per_img": inference_seconds_per_image(
            teacher_cfg, teacher["weights"], timing_images),
        "student_s_per_img": inference_seconds_per_image(
            student_cfg, by_group["test" if not selection_only else "val"]["baseline"][0][
                "weights"], timing_images),
        "torch_threads": torch.get_num_threads(),
    }
    results["speed"]["student_speedup"] = (
        results["speed"]["teacher_s_per_img"] / results["speed"]["student_s_per_img"])
    return results


def _kd_overrides(base: CfgNode, other: CfgNode) -> Dict:
    """{KEY: value} of the KD.* keys where `other` differs from `base`."""
    out = {}

    def walk(a, b, prefix):
        for k in b:
            if isinstance(b[k], CfgNode):
                walk(a[k], b[k], f"{prefix}{k}.")
            elif a[k] != b[k]:
                out[prefix + k] = b[k]

    walk(base.KD, other.KD, "KD.")
    return out


def write_report(results: Dict, json_path: str, png_path: str, title: str) -> None:
    """results JSON + a PNG: test AP and AP50 of every row (mean +- std), the validation
    learning curves, and CPU inference time of both sizes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    save_json(json_path, results)
    split = "test" if "baseline" in results else "validation"
    src = results if split == "test" else results["validation"]
    rows = [r for r in ("teacher", "baseline", "kd", "kd_best") if r in src]
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    for ax, metric in zip(axes[:2], ("AP", "AP50")):
        stats = [src[r][f"{metric}_stats"] for r in rows]
        ax.bar(range(len(rows)), [s["mean"] for s in stats], yerr=[s["std"] for s in stats],
               capsize=3, color=[f"C{i}" for i in range(len(rows))])
        for i, (r, st) in enumerate(zip(rows, stats)):
            ax.scatter([i] * len(src[r][metric]), src[r][metric], color="k", s=8)
            ax.text(i, st["mean"], f"{st['mean']:.1f}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(rows)
        ax.set_title(f"{split} {metric} (mean ± std, dots: seeds)")
    ax = axes[2]
    for i, r in enumerate(rows):
        curve = results.get("curves", {}).get(r) or []
        ax.plot([c["iter"] for c in curve], [c["AP50"] for c in curve], "o-", ms=3,
                label=r, color=f"C{i}")
    ax.set_xlabel("iteration")
    ax.set_title("validation AP50 during training")
    ax.legend(fontsize=8)
    sp = results["speed"]
    axes[3].bar([0, 1], [sp["teacher_s_per_img"] * 1000, sp["student_s_per_img"] * 1000],
                color=["C0", "C1"])
    axes[3].set_xticks([0, 1])
    axes[3].set_xticklabels(["teacher", "student"])
    axes[3].set_title("CPU ms / image (batch 1)")
    fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(png_path)), exist_ok=True)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def format_table(results: Dict) -> str:
    """Markdown tables of the comparison: test rows (mean +- std, per-seed values) when
    they ran, the validation runs, gap closed, time-to-accuracy, FLOPs and speed."""
    lines = []
    if "baseline" in results:
        lines += ["| model | test AP50 | test AP | per-seed AP50 | per-seed AP |",
                  "|---|---|---|---|---|"]
        for name in ("teacher", "baseline", "kd", "kd_best"):
            if name in results:
                r = results[name]
                a50, ap = r["AP50_stats"], r["AP_stats"]
                lines.append(f"| {name} | {a50['mean']:.1f} ± {a50['std']:.1f} | "
                             f"{ap['mean']:.1f} ± {ap['std']:.1f} | "
                             f"{', '.join(f'{v:.1f}' for v in r['AP50'])} | "
                             f"{', '.join(f'{v:.1f}' for v in r['AP'])} |")
        lines.append("")
    if results.get("validation"):
        lines += ["| validation run (seed 0) | val AP50 | val AP |", "|---|---|---|"]
        for name, r in dict(results["validation"], **results.get("ablation", {})).items():
            lines.append(f"| {name} | {r['AP50'][0]:.1f} | {r['AP'][0]:.1f} |")
        lines.append("")
    for row in ("kd", "kd_best"):
        parts = []
        if f"gap_closed_AP50_{row}" in results:
            parts.append(f"test gap closed AP50 {results[f'gap_closed_AP50_{row}']:.2f}, "
                         f"AP {results[f'gap_closed_AP_{row}']:.2f}")
        if row in results.get("validation_gap_closed", {}):
            g = results["validation_gap_closed"][row]
            parts.append(f"validation gap closed AP50 {g['AP50']:.2f}, AP {g['AP']:.2f}")
        if row in results.get("time_to_accuracy", {}):
            tta = results["time_to_accuracy"][row]
            parts.append("time to the baseline's final val AP50: " + (
                f"{tta:.2f}x the baseline's" if tta is not None else "not reached"))
        if parts:
            lines.append(f"{row}: " + "; ".join(parts) + ".")
    sp, fl = results["speed"], results["flops"]
    lines.append(f"Backbone+FPN: teacher {fl['teacher_backbone_gflops']:.2f} GFLOPs, student "
                 f"{fl['student_backbone_gflops']:.2f} ({fl['backbone_ratio']:.1f}x). CPU "
                 f"inference ({sp['torch_threads']} threads, batch 1): teacher "
                 f"{sp['teacher_s_per_img'] * 1000:.0f} ms/img, student "
                 f"{sp['student_s_per_img'] * 1000:.0f} ms/img "
                 f"({sp['student_speedup']:.2f}x faster).")
    return "\n".join(lines)


def role_configs(folder: str) -> Dict[str, str]:
    """{"teacher", "student", "kd"[, "kd_best"]} -> `<folder>/<role>.yaml`, the layout of
    configs/builtin and configs/BCCD."""
    roles = ("teacher", "student", "kd", "kd_best")
    out = {role: os.path.join(folder, f"{role}.yaml") for role in roles}
    return {r: p for r, p in out.items() if r != "kd_best" or os.path.isfile(p)}


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
