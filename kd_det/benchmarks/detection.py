"""The teacher / baseline student / distilled student protocol of `make demo` and
tools/bench_accuracy.py: training stages (run by the orchestrator), evaluation, FLOPs,
CPU inference timing, and the report."""
import hashlib
import json
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
from detectron2.utils.env import seed_all_rng

from ..checkpoint import SafeDetectionCheckpointer
from ..config import add_kd_config
from ..engine import KDTrainer
from ..modeling.backbone import add_efficientnet_config, add_mobilenet_config
from ..modeling.class_map import InStudentClasses, resolve_class_map
from .orchestrator import (
    Stage,
    cached_json,
    config_fingerprint,
    read_diagnostics,
    run_stages,
)
from .report import Bars, Curves, mean_spread, mean_std, save_report
from .timing import median_time

__all__ = ["load_cfg", "detection_fingerprint", "train_detector", "stage_cfg",
           "inference_seconds_per_image", "evaluate_weights", "backbone_gflops", "read_curve",
           "time_to_accuracy", "summarize", "compare", "compare_teachers",
           "write_report", "results_table", "format_table", "role_configs"]

ROWS = ("teacher", "baseline", "kd", "kd_best")


def load_cfg(path: str, opts: Optional[List] = None) -> CfgNode:
    """A detection config as the tools read it: Detectron2's defaults with kd_det's keys
    (KD.*, MODEL.MOBILENET.*, MODEL.EFFICIENTNET.*), the YAML read as safe YAML, then
    KEY VALUE `opts`."""
    cfg = get_cfg()
    add_kd_config(cfg)
    add_mobilenet_config(cfg)
    add_efficientnet_config(cfg)
    cfg.merge_from_file(path, allow_unsafe=False)
    cfg.merge_from_list([str(x) if not isinstance(x, str) else x for x in (opts or [])])
    return cfg


# KD keys added after benchmark stages were first cached: at their defaults they change
# nothing, so they stay out of the hash and those stages stay valid.
_LATER_KD_DEFAULTS = {"TEACHERS": [], "STUDENT.INPUT_SCALE": 1.0, "TEACHER.CLASS_MAP": [],
                      "TEACHER.ALLOW_MISSING_CLASSES": False, "HINT.PAIR_BY": "name"}


def detection_fingerprint(cfg: CfgNode) -> str:
    """Hash of the config; a plain detector's ignores the KD node, so that adding KD keys
    does not retrain finished teachers and baselines, and a KD run's ignores the KD keys
    of _LATER_KD_DEFAULTS left at their defaults. MODEL.EFFICIENTNET, added after stages
    were first cached, counts only for a model of that backbone."""
    cfg = cfg.clone()
    cfg.defrost()
    if cfg.MODEL.META_ARCHITECTURE != "DistillRCNN":
        del cfg["KD"]
    if "EFFICIENTNET" in cfg.MODEL and "efficientnet" not in cfg.MODEL.BACKBONE.NAME:
        del cfg.MODEL["EFFICIENTNET"]
    for key, default in _LATER_KD_DEFAULTS.items():
        *parents, leaf = key.split(".")
        node = cfg.get("KD", {})
        for p in parents:
            node = node.get(p, {})
        if node.get(leaf, None) == default:
            del node[leaf]
    return config_fingerprint(cfg)


def _bbox(results: Dict) -> Dict[str, float]:
    """Every box metric the evaluator gives: AP, AP50, AP75, and per size (APs/APm/APl)
    and per class (AP-<class> from COCO, AP50-<class> from VOC) when it has them."""
    return {k: float(v) for k, v in results.get("bbox", results).items()}


def train_detector(cfg: CfgNode, resume: bool = False) -> Dict:
    """A stage: train `cfg` (a plain detector or a DistillRCNN) and evaluate it on
    DATASETS.TEST; its final weights and AP / AP50."""
    # Same seed -> same initial student in baseline and KD runs; < 0: a random one, as in
    # Detectron2's default_setup.
    seed_all_rng(cfg.SEED if cfg.SEED >= 0 else None)
    trainer = KDTrainer(cfg)
    trainer.resume_or_load(resume=resume)
    results = trainer.train()
    return {"weights": os.path.join(cfg.OUTPUT_DIR, "model_final.pth"), **_bbox(results)}


def _stage(name: str, cfg: CfgNode, output_dir: str, after=()) -> Stage:
    cfg = cfg.clone()
    cfg.defrost()
    cfg.OUTPUT_DIR = output_dir
    cfg.freeze()
    return Stage(name, cfg, train_detector, after=tuple(after),
                 fingerprint=detection_fingerprint(cfg), identity=detection_fingerprint)


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
    fp = f"{detection_fingerprint(cfg)}{weights}{os.path.getmtime(weights)}"
    fp = hashlib.sha1(fp.encode()).hexdigest()[:12]

    def evaluate():
        test_cfg = cfg.clone()
        test_cfg.defrost()
        test_cfg.DATASETS.TEST = (dataset,)
        test_cfg.OUTPUT_DIR = cache_dir  # the evaluator's files beside the cached record
        model = KDTrainer.build_model(test_cfg)
        SafeDetectionCheckpointer(model).load(weights)
        return _bbox(KDTrainer.test(test_cfg, in_classes_of(model, cfg, dataset)))

    return cached_json(os.path.join(cache_dir, f"eval_{dataset}.json"), fp, evaluate)


def in_classes_of(model: torch.nn.Module, cfg: CfgNode, dataset: str) -> torch.nn.Module:
    """`model` (trained on cfg.DATASETS.TRAIN) as `dataset`'s evaluator must see it: when
    the dataset has a subset of its classes (a 7-class teacher on a 3-class student's test
    set), its detections mapped by class name to the dataset's classes."""
    def names(d):  # a COCO json's class names are known once it is read
        if d not in DatasetCatalog.list():
            return None
        if MetadataCatalog.get(d).get("thing_classes", None) is None:
            DatasetCatalog.get(d)
        return MetadataCatalog.get(d).get("thing_classes", None)

    dataset_classes, model_classes = names(dataset), names(cfg.DATASETS.TRAIN[0])
    if dataset_classes is None or model_classes is None or (
            list(dataset_classes) == list(model_classes)):
        return model
    return InStudentClasses(model, resolve_class_map(
        "by_name", dataset_classes, model_classes, len(dataset_classes), len(model_classes),
        key=f"scoring a model of {cfg.DATASETS.TRAIN[0]}'s classes on {dataset}"))


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
    """[{iter, seconds, AP, AP50, AP75[, APs, APm, APl]}] of a stage trained with
    TEST.EVAL_PERIOD > 0 (the sizes when the evaluator is COCO's)."""
    path = os.path.join(output_dir, "curve.json")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        rows = json.load(f)
    return [{"iter": r["iter"], "seconds": r["seconds"], "AP": r["bbox/AP"],
             "AP50": r["bbox/AP50"], "AP75": r.get("bbox/AP75"),
             **{k: r[f"bbox/{k}"] for k in ("APs", "APm", "APl") if f"bbox/{k}" in r}}
            for r in rows]


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
    """[stage per seed] -> {"AP": [...], "AP50": [...], mean / std, train_seconds, and,
    when every stage has them, "AP75", "AP_per_size" {APs, APm, APl} and per class
    "AP_per_class" (COCO's AP-<class>) / "AP50_per_class" (VOC's AP50-<class>)}."""

    def per_seed(key):
        return [s[key] for s in stages]

    def common(keys):
        return sorted(k for k in keys if all(k in s for s in stages))

    out = {
        "AP": per_seed("AP"),
        "AP50": per_seed("AP50"),
        "AP_stats": mean_spread(per_seed("AP")),
        "AP50_stats": mean_spread(per_seed("AP50")),
        "train_seconds": [s.get("train_seconds") for s in stages],
    }
    if any(s.get("resumed_at_iter") for s in stages):  # train_seconds: the last part only
        out["resumed_at_iter"] = [s.get("resumed_at_iter", 0) for s in stages]
    if common(["AP75"]):
        out["AP75"] = per_seed("AP75")
    sizes = common(["APs", "APm", "APl"])
    if sizes:
        out["AP_per_size"] = {k: per_seed(k) for k in sizes}
    for prefix, key in (("AP-", "AP_per_class"), ("AP50-", "AP50_per_class")):
        classes = common(k for k in stages[0] if k.startswith(prefix))
        if classes:
            out[key] = {k[len(prefix):]: per_seed(k) for k in classes}
    return out


def _gap_closed(results: Dict, row: str, metric: str) -> float:
    t, b, k = (results[n][f"{metric}_stats"]["mean"] for n in ("teacher", "baseline", row))
    return (k - b) / (t - b) if t != b else float("nan")


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
    run_rows: Optional[List[str]] = None,
    previous: Optional[Dict] = None,
    teacher_dir: str = "",
    val_seeds: int = 1,
    stage_filter: str = "",
    baseline_dir: str = "",
    setup=None,
) -> Dict:
    """Teacher (trained once, by its own config, in `teacher_dir`, default
    `<output_dir>/teacher`: another pair of the same teacher config shares it), then
    baseline, Chen's recipe (`kd`) and kd_det's best recipe (`kd_best`, when configs has
    it):

    - selection runs, when `val_split` = (train, val) datasets is given: the first
      `val_seeds` seeds, validation AP logged during training (the learning curves of
      seeds[0]), plus `ablations`
      ({name: KD.* overrides of Chen's recipe}: the options one at a time, the search
      kd_best is chosen by); the KD runs log KD diagnostics every `diagnostics_period`
      iterations;
    - test runs on `test_split` = (train, test), every seed, no evaluation before the end.

    The test runs of the rows are reported as per-seed lists; the teacher's AP is its
    weights' AP on the test dataset. opts: extra KEY VALUE lists per role (e.g. a shorter
    schedule). Stages run `jobs` at a time (one torch thread each when jobs > 1) and are
    cached and resumable; the stages that do not read the teacher (baselines) share the
    workers with it. `selection_only` stops after the selection runs (a benchmark split
    over sessions reports its validation part first).

    `run_rows` (default: every row) limits the student stages to those rows; the other
    rows, and the option search when `ablations` is empty, are carried over from
    `previous` (an earlier results JSON of this protocol). The baseline never sees the
    teacher; a distilled row is valid only if it was distilled from this very teacher, so
    carrying one requires the teacher's test AP to equal `previous`'s to the last digit.

    `stage_filter` (a regular expression) trains only the stages whose names match it
    (e.g. "baseline" on a free core while another process trains the teacher) and returns
    {"stages": their names}: the report needs every stage.

    `baseline_dir` (default `output_dir`) holds the baseline stages, which never read the
    teacher: a pair of another teacher and the same student reuses a benchmark's trained
    baselines (their fingerprints must match, else they train). `setup` (a picklable
    (function, args)) runs first in each worker process, e.g. to register the datasets
    the stages read. The teacher is scored on the splits' datasets in their classes (a
    teacher of a wider label space through its class map by name).
    """
    opts = opts or {}
    rows = [r for r in ROWS[1:] if r in configs or r == "baseline"]
    run_rows = [r for r in rows if run_rows is None or r in run_rows]
    carried = [r for r in rows if r not in run_rows]
    if carried and not previous:
        raise ValueError(f"rows {carried} are not run: pass the results JSON to carry them "
                         "over from")
    teacher_cfg = load_cfg(configs["teacher"], opts.get("teacher"))
    teacher_dir = teacher_dir or os.path.join(output_dir, "teacher")
    teacher_stage = _stage("teacher", teacher_cfg, teacher_dir)
    teacher_weights = os.path.join(teacher_dir, "model_final.pth")  # train_detector's
    check_teacher = any(r != "baseline" for r in carried)
    if check_teacher:  # the teacher alone first: checked before any student trains
        run_stages([teacher_stage])
        _check_same_teacher(evaluate_weights(teacher_cfg, teacher_weights, test_split[1],
                                              teacher_dir), previous["teacher"])

    def cfg_for(row, seed, split, extra=()):
        return stage_cfg(configs, row, seed, val_split if split == "val" else test_split,
                         teacher_weights, split == "val", opts.get(_ROLE[row]),
                         diagnostics_period, extra)

    # The teacher, then the students, selection runs first; (group, row) of each student.
    stages, groups = [teacher_stage], []

    def add(group, name, cfg, split, seed):
        folder = os.path.join(split, f"{name}_s{seed}")
        after = () if name == "baseline" else ("teacher",)
        root = (baseline_dir or output_dir) if name == "baseline" else output_dir
        stages.append(_stage(folder, cfg, os.path.join(root, folder), after))
        groups.append((group, name))

    if val_split:
        for seed in seeds[:val_seeds]:
            for row in run_rows:
                add("val", row, cfg_for(row, seed, "val"), "val", seed)
            for name, extra in (ablations or {}).items():
                add("ablation", name, cfg_for("kd", seed, "val", extra), "val", seed)
    for seed in [] if selection_only else seeds:
        for row in run_rows:
            add("test", row, cfg_for(row, seed, "test"), "test", seed)
    if stage_filter:
        chosen = [s for s in stages if re.search(stage_filter, s.name)]
        names = {s.name for s in chosen}
        unmet = sorted({a for s in chosen for a in s.after if a not in names})
        if unmet:
            raise ValueError(f"stage filter {stage_filter!r}: the chosen stages read {unmet}, "
                             "which it leaves out; include them or leave those stages out")
        run_stages(chosen, jobs, setup=setup)
        return {"stages": [s.name for s in chosen]}
    records = run_stages(stages, jobs, setup=setup)
    teacher = records["teacher"]
    teacher_test = None if selection_only else evaluate_weights(
        teacher_cfg, teacher["weights"], test_split[1], teacher_dir)

    results = {"protocol": {
        "selection": (f"train {val_split[0]} -> validate {val_split[1]}, seeds "
                      f"{list(seeds[:val_seeds])}" if val_split else "none"),
        "test": f"train {test_split[0]} -> test {test_split[1]}, seeds {list(seeds)}",
        "teacher": f"{configs['teacher']}, trained once on its own DATASETS.TRAIN",
    }}
    by_group: Dict[str, Dict[str, List]] = {"val": {}, "ablation": {}, "test": {}}
    for (group, name), stage in zip(groups, stages[1:]):
        by_group[group].setdefault(name, []).append(
            dict(records[stage.name], dir=stage.cfg.OUTPUT_DIR, cfg=stage.cfg))
    if not selection_only:
        results["teacher"] = summarize([teacher_test])
        results["teacher"]["train_seconds"] = [teacher["train_seconds"]]
        if carried:
            results["protocol"]["carried_over"] = carried
        for row in rows:
            results[row] = (summarize(by_group["test"][row]) if row in run_rows
                            else previous[row])
        for row in rows[1:]:
            results[f"gap_closed_AP50_{row}"] = _gap_closed(results, row, "AP50")
            results[f"gap_closed_AP_{row}"] = _gap_closed(results, row, "AP")
        # Today's layout: gap_closed_AP50 / gap_closed_AP are Chen's recipe's.
        results["gap_closed_AP50"] = results.get("gap_closed_AP50_kd")
        results["gap_closed_AP"] = results.get("gap_closed_AP_kd")
    if val_split:
        prev = previous or {}
        teacher_val = (teacher if val_split[1] in teacher_cfg.DATASETS.TEST else dict(
            evaluate_weights(teacher_cfg, teacher["weights"], val_split[1], teacher_dir),
            train_seconds=teacher["train_seconds"]))
        val = {"teacher": summarize([teacher_val]), **{
            row: summarize(by_group["val"][row]) if row in run_rows
            else prev["validation"][row] for row in rows}}
        results["validation"] = val
        results["validation_gap_closed"] = {
            row: {m: _gap_closed(val, row, m) for m in ("AP50", "AP")} for row in rows[1:]}
        search_runs = bool(ablations) or not carried
        results["ablation"] = ({name: summarize(st) for name, st in by_group["ablation"].items()}
                               if search_runs else prev.get("ablation", {}))
        if not search_runs:
            results["protocol"]["ablation"] = (
                "carried over: the option search of the earlier results, distilled from the "
                "teacher those results used")
        # The teacher's own learning curve is on its DATASETS.TEST: beside the students'
        # only when that is their validation set.
        own = "teacher" if val_split[1] in teacher_cfg.DATASETS.TEST else "teacher_own_val"
        results["curves"] = {own: read_curve(teacher_dir)}
        results["diagnostics"] = {}
        for row in rows:
            run = by_group["val"][row][0]["dir"] if row in run_rows else None
            results["curves"][row] = read_curve(run) if run else prev["curves"][row]
            if row != "baseline":
                results["diagnostics"][row] = (read_diagnostics(run) if run
                                               else prev["diagnostics"][row])
        results["time_to_accuracy"] = {
            row: time_to_accuracy(results["curves"][row], results["curves"]["baseline"])
            for row in rows[1:]}
    if "kd_best" in rows:
        results["kd_best_settings"] = _kd_overrides(load_cfg(configs["kd"]),
                                                    load_cfg(configs["kd_best"]))
    student_cfg = load_cfg(configs["student"], opts.get("student"))
    results["flops"] = {"teacher_backbone_gflops": backbone_gflops(teacher_cfg),
                        "student_backbone_gflops": backbone_gflops(student_cfg)}
    results["flops"]["backbone_ratio"] = (results["flops"]["teacher_backbone_gflops"]
                                          / results["flops"]["student_backbone_gflops"])
    # The student is timed with trained weights of the first row that ran (a DistillRCNN
    # runs its student alone at inference).
    timed = by_group["test" if not selection_only else "val"][run_rows[0]][0]
    results["speed"] = {
        "teacher_s_per_img": inference_seconds_per_image(
            teacher_cfg, teacher["weights"], timing_images),
        "student_s_per_img": inference_seconds_per_image(
            timed["cfg"], timed["weights"], timing_images),
        "torch_threads": torch.get_num_threads(),
    }
    results["speed"]["student_speedup"] = (
        results["speed"]["teacher_s_per_img"] / results["speed"]["student_s_per_img"])
    if val_split:
        results["pair_check"] = pair_check(results)
    return results


# A pair worth distilling (the Aquarium issue's bar): a student this much faster at batch-1
# CPU inference, this much cheaper in backbone+FPN FLOPs, and this far below its teacher
# in val AP, both trained to a plateau, before any distillation.
PAIR_BAR = {"speedup": 3.0, "flops_ratio": 3.0, "val_AP_gap": 5.0}


def pair_check(results: Dict, bar: Dict[str, float] = PAIR_BAR) -> Dict:
    """Whether the pair clears `bar` on the selection runs, with the teacher - baseline val
    gap in AP, AP50 and per object size (where the gap sits)."""
    val = results["validation"]
    t, b = val["teacher"], val["baseline"]
    got = {"speedup": results["speed"]["student_speedup"],
           "flops_ratio": results["flops"]["backbone_ratio"],
           "val_AP_gap": t["AP_stats"]["mean"] - b["AP_stats"]["mean"],
           "val_AP50_gap": t["AP50_stats"]["mean"] - b["AP50_stats"]["mean"]}
    sizes = sorted(set(t.get("AP_per_size", {})) & set(b.get("AP_per_size", {})))
    per_size = {k: mean_spread(t["AP_per_size"][k])["mean"]
                - mean_spread(b["AP_per_size"][k])["mean"] for k in sizes}
    return {**got, "val_AP_gap_per_size": per_size, "bar": dict(bar),
            "passes": {k: got[k] >= v for k, v in bar.items()},
            "passed": all(got[k] >= v for k, v in bar.items())}


def compare_teachers(configs: Dict[str, str], output_dir: str, single_dir: str,
                     seeds: List[int], test_split: Tuple[str, str], second_seed: int = 1,
                     opts: Optional[Dict[str, List]] = None, jobs: int = 1,
                     previous: Optional[Dict] = None) -> Dict:
    """Two teachers against the best single one, for Chen's recipe (`configs["kd"]`).

    Teacher 0 is compare()'s (its stage in `single_dir`/teacher, reused); teacher 1 is
    the same config trained with SEED `second_seed`. The better one on its own validation
    set (the teacher config's DATASETS.TEST) is the single teacher; per seed, the student
    is distilled from it and from both (KD.TEACHERS) on `test_split`. Stages compare() has
    already run (teacher 0, its kd and baseline test runs) are reused from `single_dir`,
    or, given `previous` (compare()'s results JSON), its baseline and kd rows are carried
    over, provided teacher 0's test AP equals previous's teacher's.
    """
    opts = opts or {}
    t_cfgs = [load_cfg(configs["teacher"], opts.get("teacher")),
              load_cfg(configs["teacher"], list(opts.get("teacher") or []) + ["SEED", second_seed])]
    t_stages = [_stage("teacher", t_cfgs[0], os.path.join(single_dir, "teacher")),
                _stage("teacher_1", t_cfgs[1], os.path.join(output_dir, f"teacher_s{second_seed}"))]
    teachers = run_stages(t_stages, jobs)
    names = [s.name for s in t_stages]
    best = max(names, key=lambda n: teachers[n]["AP"])

    def cfg_for(row, seed, weights, extra=()):
        return stage_cfg(configs, row, seed, test_split, weights, False, opts.get(_ROLE[row]),
                         extra=extra)

    both = [[configs["teacher"], teachers[n]["weights"]] for n in names]
    ensemble = ["KD.TEACHER.CONFIG_FILE", "", "KD.TEACHER.WEIGHTS", "", "KD.TEACHERS",
                repr(both)]
    carried = {}
    if previous:
        _check_same_teacher(evaluate_weights(t_cfgs[0], teachers["teacher"]["weights"],
                                             test_split[1], t_stages[0].cfg.OUTPUT_DIR),
                            previous["teacher"])
        carried = {"baseline": previous["baseline"]}
        if best == "teacher":
            carried["kd_single"] = previous["kd"]
    stages, rows = [], {r: [] for r in ("baseline", "kd_single", "kd_two_teachers")
                        if r not in carried}
    for seed in seeds:
        single_out = (os.path.join(single_dir, "test", f"kd_s{seed}") if best == "teacher"
                      else os.path.join(output_dir, "test", f"kd_single_s{seed}"))
        for row, cfg, out in (
                ("baseline", cfg_for("baseline", seed, ""),
                 os.path.join(single_dir, "test", f"baseline_s{seed}")),
                ("kd_single", cfg_for("kd", seed, teachers[best]["weights"]), single_out),
                ("kd_two_teachers", cfg_for("kd", seed, teachers["teacher"]["weights"], ensemble),
                 os.path.join(output_dir, "test", f"kd_two_teachers_s{seed}"))):
            if row in carried:
                continue
            stages.append(_stage(f"{row}_s{seed}", cfg, out))
            rows[row].append(stages[-1].name)
    records = run_stages(stages, jobs)
    results = {
        "protocol": {"teachers": f"{configs['teacher']} with SEED 0 and {second_seed}, trained "
                                 "once on its own DATASETS.TRAIN; the single teacher is the one "
                                 "of higher AP on its DATASETS.TEST",
                     "test": f"train {test_split[0]} -> test {test_split[1]}, seeds {seeds}",
                     "recipe": configs["kd"]},
        "teachers": {n: {"val_AP": teachers[n]["AP"], "val_AP50": teachers[n]["AP50"],
                         "test": evaluate_weights(t_cfgs[i], teachers[n]["weights"],
                                                  test_split[1], t_stages[i].cfg.OUTPUT_DIR)}
                     for i, n in enumerate(names)},
        "single_teacher": best,
    }
    results["teacher"] = summarize([results["teachers"][best]["test"]])
    for row, stage_names in rows.items():
        results[row] = summarize([records[n] for n in stage_names])
    for row, carried_row in carried.items():
        results[row] = {k: carried_row[k] for k in ("AP", "AP50", "AP_stats", "AP50_stats")}
    if carried:
        results["protocol"]["carried_over"] = sorted(carried)
    for row in ("kd_single", "kd_two_teachers"):
        for m in ("AP50", "AP"):
            results[f"gap_closed_{m}_{row}"] = _gap_closed(results, row, m)
    return results


def _as_list(v) -> List[float]:
    return v if isinstance(v, list) else [v]


def _check_same_teacher(now: Dict, before: Dict) -> None:
    for m in ("AP", "AP50"):
        if [f"{v:.6f}" for v in _as_list(now[m])] != [f"{v:.6f}" for v in _as_list(before[m])]:
            raise ValueError(
                f"the teacher's test {m} is {now[m]}, the carried-over results were distilled "
                f"from a teacher of {before[m]}: rerun every row (no --carry-over)")


def choose_kd_best(results: Dict, options: Dict[str, List]) -> Tuple[Optional[str], Dict]:
    """The rule kd_best is chosen by, fixed before any run it judges: Chen's recipe plus
    the searched option (`options`: {name: KEY VALUE list}, each run alone on top of Chen's
    recipe) of the highest mean val AP over the selection seeds, if that mean beats Chen's
    recipe's; else Chen's recipe itself. (name or None, {KEY: value})."""
    val, search = results["validation"], results.get("ablation", {})
    if not search:
        raise ValueError("no option search in these results: run the selection with options")
    missing = sorted(set(search) - set(options))
    if missing:
        raise ValueError(f"options {missing} of the search are unknown here")
    best = max(search, key=lambda n: search[n]["AP_stats"]["mean"])
    if search[best]["AP_stats"]["mean"] <= val["kd"]["AP_stats"]["mean"]:
        return None, {}
    return best, dict(zip(options[best][::2], options[best][1::2]))


def kd_best_yaml(results: Dict, options: Dict[str, List], output_dir: str) -> str:
    """configs/<set>/kd_best.yaml as choose_kd_best decides it: kd.yaml plus the chosen
    overrides (training into `output_dir`), with the rule and the val means it was decided
    on in its comment."""
    import yaml

    name, overrides = choose_kd_best(results, options)
    means = {"kd (Chen)": results["validation"]["kd"], **{
        f"kd + {n}": r for n, r in results["ablation"].items()}}
    lines = ["# kd_det's best recipe, chosen by kd_det.benchmarks.detection.choose_kd_best on",
             f"# the selection runs ({results['protocol']['selection']}) and nothing else:",
             "# Chen's recipe plus the option of the highest mean val AP, if it beats Chen's.",
             "# Mean val AP (AP50) over the seeds:"]
    lines += [f"#   {n}: {r['AP_stats']['mean']:.2f} ({r['AP50_stats']['mean']:.2f})"
              for n, r in means.items()]
    lines.append(f"# Chosen: {name or 'none beats it, so Chen recipe itself'}.")
    tree: Dict = {}
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    body = yaml.safe_dump({"_BASE_": "kd.yaml", **tree, "OUTPUT_DIR": output_dir},
                          sort_keys=False)
    return "\n".join(lines) + "\n" + body


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
    """results JSON + a PNG: AP and AP50 of every row (mean ± std, test split when it ran),
    the validation learning curves, and CPU inference time of both sizes."""
    split = "test" if "baseline" in results else "validation"
    src = results if split == "test" else results["validation"]
    rows = [r for r in ROWS if r in src]
    curves = {r: c for r, c in results.get("curves", {}).items() if r in rows}
    sp = results["speed"]
    panels = [Bars(f"{split} {m} (mean ± std, dots: seeds)", {r: src[r][m] for r in rows},
                   fmt=".1f") for m in ("AP", "AP50")]
    if curves:
        panels.append(Curves(
            "validation AP50 during training",
            {r: ([p["iter"] for p in c], [p["AP50"] for p in c]) for r, c in curves.items()},
            xlabel="iteration"))
    if results.get("ablation"):  # the option search: each option added alone to kd
        val = results["validation"]
        runs = {**{r: val[r] for r in ("baseline", "kd") if r in val},
                **{f"kd+{n}": r for n, r in results["ablation"].items()},
                **({"kd_best": val["kd_best"]} if "kd_best" in val else {})}
        panels += [Bars(f"selection runs: val {m}", {n: r[m] for n, r in runs.items()},
                        fmt=".1f", zoom=True) for m in ("AP", "AP50")]
    panels.append(Bars("CPU ms / image (batch 1)", {"teacher": [sp["teacher_s_per_img"] * 1000],
                                                    "student": [sp["student_s_per_img"] * 1000]},
                       fmt=".0f"))
    save_report(results, json_path, png_path, panels, title)


def results_table(results: Dict, rows: Sequence[str] = ROWS) -> str:
    """The Markdown table of the test rows: mean +- std and the per-seed values of AP50 and
    AP (the README's tables are this function's output, checked by a test)."""
    lines = ["| model | test AP50 | test AP | per-seed AP50 | per-seed AP |",
             "|---|---|---|---|---|"]
    for name in rows:
        if name in results:
            r = results[name]
            lines.append(f"| {name} | {mean_std(r['AP50'])} | {mean_std(r['AP'])} | "
                         f"{', '.join(f'{v:.1f}' for v in r['AP50'])} | "
                         f"{', '.join(f'{v:.1f}' for v in r['AP'])} |")
    return "\n".join(lines)


def breakdown_table(rows: Dict[str, Dict], split: str) -> str:
    """AP per object size and per class (COCO's evaluator), mean over seeds, of each row
    in `rows` that has them: where a gap sits."""
    rows = {n: r for n, r in rows.items() if "AP_per_size" in r}
    if not rows:
        return ""
    first = next(iter(rows.values()))
    sizes = [k for k in ("APs", "APm", "APl") if k in first["AP_per_size"]]
    classes = sorted(first.get("AP_per_class", {}))
    lines = [f"| {split} AP by size and class | " + " | ".join(sizes + classes) + " |",
             "|---|" + "---|" * (len(sizes) + len(classes))]
    for name, r in rows.items():
        cells = [r["AP_per_size"][k] for k in sizes]
        cells += [r.get("AP_per_class", {}).get(c, [float("nan")]) for c in classes]
        lines.append(f"| {name} | " + " | ".join(f"{mean_spread(v)['mean']:.1f}"
                                                  for v in cells) + " |")
    return "\n".join(lines)


def format_table(results: Dict) -> str:
    """Markdown tables of the comparison: test rows (mean +- std, per-seed values) when
    they ran, the validation runs, AP by size and class where the evaluator gives them,
    gap closed, time-to-accuracy, FLOPs and speed."""
    lines = []
    if "baseline" in results:
        lines += [results_table(results), ""]
    for split, rows in (("test", {n: results[n] for n in ROWS if n in results}),
                        ("val", results.get("validation", {}))):
        table = breakdown_table(rows, split)
        if table:
            lines += [table, ""]
    if results.get("validation"):
        lines += ["| validation run | val AP50 | val AP | seeds |", "|---|---|---|---|"]
        for name, r in dict(results["validation"], **results.get("ablation", {})).items():
            lines.append(f"| {name} | {mean_std(r['AP50'])} | {mean_std(r['AP'])} | "
                         f"{len(r['AP'])} |")
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
    if "pair_check" in results:
        pc = results["pair_check"]
        sizes = ", ".join(f"{k} {v:+.1f}" for k, v in pc["val_AP_gap_per_size"].items())
        lines.append(
            f"Pair check (val, before distillation): teacher - baseline {pc['val_AP_gap']:.1f} "
            f"AP (bar {pc['bar']['val_AP_gap']:g}), {pc['val_AP50_gap']:.1f} AP50"
            + (f"; by size {sizes}" if sizes else "")
            + f"; speed-up {pc['speedup']:.1f}x, FLOPs {pc['flops_ratio']:.1f}x (bars "
            f"{pc['bar']['speedup']:g}x, {pc['bar']['flops_ratio']:g}x): "
            + ("passed." if pc["passed"] else "not passed."))
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
