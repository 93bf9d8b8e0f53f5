"""Classification distillation on Fashion-MNIST: validation search, plateau schedule,
test once over seeds.

- Splits: 55,000 train / 5,000 val carved from the training images / the official 10,000
  test images. Val chooses each method's weights and draws the learning curves; test is
  read for the chosen settings only, over every seed.
- Teachers: two ResNets (seeds 0 and 1) on the student's schedule; KD, FitNets and FNKD
  distil from the first, MEAL V2 from both. Their top-1 on the training images (the inputs
  the student sees), on val and on test is part of the report.
- Schedule: the student alone, KD, FitNets and FNKD train for `iters` iterations with one
  optimizer and LR schedule (FitNets' hint stage counted in them), every run logging val
  top-1 and each loss's gradient norm every CLS.CURVE_PERIOD iterations.
- Search: each candidate of SEARCH (the paper's setting first) trains with the first seed
  and the best final val top-1 wins (orchestrator.pick_best); the winner's run is also its
  first test seed. FitNets' KD stage takes KD's chosen T and alphas, so that FitNets - KD
  is the hint stage alone.
- MEAL V2 as in its paper: each seed's trained student alone trained on for `extra_iters`
  with the ensemble loss, against the same checkpoint trained on as long with plain CE
  (the "continued CE" row).
- Paired comparisons: a method and its baseline share the seed (initialisation and data
  order), so the per-seed differences are reported beside the means.
"""
import hashlib
import json
import os
import time
from typing import Dict, List, Sequence

import torch

from ..auxiliary.classification import ClsTrainer
from ..auxiliary.classification.data import load_split
from ..auxiliary.classification.trainer import load_teacher
from ..file_io import save_json
from ..modeling.frozen import freeze
from .orchestrator import Stage, config_fingerprint, pick_best, run_report, run_stages
from .report import Bars, Curves, mean_spread, mean_std

__all__ = ["ROWS", "SEARCH", "FITNETS_STAGE1", "TEACHER_SEEDS", "COMPARISONS",
           "evaluate_teachers", "format_table", "quick_settings", "read_curves",
           "run_benchmark", "train_run"]

# Row -> config file (None: evaluated from the teachers, not trained); the table's order.
ROWS = {
    "teacher": "teacher.yaml",
    "teacher ensemble (K=2)": None,
    "student alone": "student.yaml",
    "KD": "kd.yaml",
    "FitNets": "fitnets.yaml",
    "FNKD": "fnkd.yaml",
    "continued CE": "continued_ce.yaml",
    "MEAL V2": "meal_v2.yaml",
}
TEACHER_SEEDS = (0, 1)
# The validation search: row -> {candidate: KEY VALUE overrides}, the paper's setting first
# (pick_best gives it the ties), then one change at a time.
SEARCH = {
    # Hinton et al. 2015 with RepDistiller's T = 4 and 0.9 soft / 0.1 hard; a lower T; an
    # equal split between the soft and the hard loss.
    "KD": {
        "T4_soft0.9": ("CLS.KD.TEMPERATURE", 4.0, "CLS.KD.ALPHA_SOFT", 0.9,
                       "CLS.KD.ALPHA_HARD", 0.1),
        "T2_soft0.9": ("CLS.KD.TEMPERATURE", 2.0, "CLS.KD.ALPHA_SOFT", 0.9,
                       "CLS.KD.ALPHA_HARD", 0.1),
        "T4_soft0.5": ("CLS.KD.TEMPERATURE", 4.0, "CLS.KD.ALPHA_SOFT", 0.5,
                       "CLS.KD.ALPHA_HARD", 0.5),
    },
    # The official code's w = 9 (CIFAR-100), and a third of it.
    "FNKD": {"w9": ("CLS.FNKD.WEIGHT", 9.0), "w3": ("CLS.FNKD.WEIGHT", 3.0)},
    # The paper's discriminator (weight 1), and none.
    "MEAL V2": {"disc1": ("CLS.MEAL.DISC_WEIGHT", 1.0), "disc0": ("CLS.MEAL.DISC_WEIGHT", 0.0)},
}
# FitNets' candidates: the hint stage's share of the schedule (CLS.FITNETS.STAGE1_ITERS).
FITNETS_STAGE1 = {"stage1_10pct": 0.1, "stage1_25pct": 0.25}
# (method, baseline) pairs reported as paired per-seed differences.
COMPARISONS = (("KD", "student alone"), ("FitNets", "student alone"), ("FitNets", "KD"),
               ("FNKD", "student alone"), ("MEAL V2", "continued CE"),
               ("continued CE", "student alone"))
_CONTINUED = ("continued CE", "MEAL V2")  # rows that start from the student alone
_TEACHERS = {"KD": 1, "FitNets": 1, "FNKD": 1, "MEAL V2": len(TEACHER_SEEDS)}


def quick_settings() -> Dict:
    """The smoke run of --quick: the whole pipeline on a slice of the data with tiny
    networks and a few iterations (seconds per stage)."""
    return {"iters": 8, "extra_iters": 4, "opts": [
        "CLS.DATA.VAL_SIZE", "128", "CLS.DATA.TRAIN_SIZE", "512", "CLS.DATA.TEST_SIZE", "200",
        "DATALOADER.BATCH_SIZE", "16", "SOLVER.WARMUP_ITERS", "0", "SOLVER.LOG_PERIOD", "2",
        "CLS.CURVE_PERIOD", "2", "CLS.TEACHER.WIDTHS", "(8, 8, 8)",
        "CLS.MODEL.WIDTHS", "(4, 8, 8)"]}


def read_curves(output_dir: str, max_iter: int) -> Dict[str, List]:
    """A run's learning curves from its metrics.json, at the points that logged val top-1
    (every CLS.CURVE_PERIOD and the end): "iter" (iterations done), "val/top1", each loss
    (median of the last 20 iterations) and each grad_norm/<term>. A step logs at its 0-based
    iteration, the final evaluation at max_iter; a resumed run's repeated lines count once."""
    points: Dict[int, Dict] = {}
    with open(os.path.join(output_dir, "metrics.json")) as f:
        for line in f:
            rec = json.loads(line)
            points.setdefault(min(rec["iteration"] + 1, max_iter), {}).update(rec)
    done = [i for i in sorted(points) if "val/top1" in points[i]]
    keys = sorted({k for i in done for k in points[i] if k.startswith(("loss_", "grad_norm/"))})
    curves = {"iter": done, "val/top1": [points[i]["val/top1"] for i in done]}
    curves.update({k: [points[i].get(k) for i in done] for k in keys})
    return curves


def train_run(cfg, resume: bool = False) -> Dict:
    """A stage that trains: ClsTrainer's val / test top-1 and the run's curves."""
    results = ClsTrainer.run(cfg, resume=resume)
    return {**results, "curves": read_curves(cfg.OUTPUT_DIR, cfg.SOLVER.MAX_ITER)}


@torch.no_grad()
def evaluate_teachers(cfg, resume: bool = False) -> Dict[str, float]:
    """A stage that trains nothing: top-1 of each teacher of CLS.TEACHER.WEIGHTS and of
    their ensemble (mean softmax) on the training images (the inputs the student sees),
    val and test, and their mean top probability on the training images (how far the soft
    targets are from one-hot)."""
    teachers = [freeze(load_teacher(cfg, w)) for w in cfg.CLS.TEACHER.WEIGHTS]
    out = {}
    for split in ("train", "val", "test"):
        images, labels = load_split(cfg, split).tensors
        probs = [torch.cat([t(images[i:i + 1000]).softmax(1)
                            for i in range(0, len(images), 1000)]) for t in teachers]
        named = {**{f"teacher{i}": p for i, p in enumerate(probs)},
                 "ensemble": torch.stack(probs).mean(0)}
        for name, p in named.items():
            out[f"{name}/{split}/top1"] = 100.0 * (p.argmax(1) == labels).double().mean().item()
            if split == "train":
                out[f"{name}/train/confidence"] = p.max(1).values.double().mean().item()
    return out


class _Plan:
    """The benchmark's stages, added phase by phase: a test run needs its method's chosen
    setting, and FitNets' search needs KD's."""

    def __init__(self, config_dir, output_root, seeds, iters, extra_iters, opts):
        self.config_dir, self.output_root = config_dir, output_root
        self.seeds, self.iters, self.extra_iters = list(seeds), iters, extra_iters
        self.opts = list(opts)
        self.stages: List[Stage] = []
        self.by_name: Dict[str, Stage] = {}
        self.rows: Dict[str, Dict[int, str]] = {row: {} for row in ROWS}  # seed -> stage
        self.search: Dict[str, Dict[str, Dict]] = {}  # row -> label -> {opts, stage}
        self.chosen: Dict[str, str] = {}

    def final(self, name: str) -> str:
        return os.path.join(self.output_root, name, "model_final.pth")

    def add(self, name: str, config: str, seed: int, extra=(), after=(), train=train_run,
            iters: int = 0) -> str:
        """A stage of `config` with the common overrides and `extra`; its fingerprint covers
        the stages it reads (`after`), so that it reruns when one of them does."""
        run_opts = ["SOLVER.MAX_ITER", str(iters or self.iters), *self.opts, "SEED", str(seed),
                    "OUTPUT_DIR", os.path.join(self.output_root, name), *map(str, extra)]
        cfg = ClsTrainer.setup_cfg(os.path.join(self.config_dir, config), run_opts)
        key = config_fingerprint(cfg) + "".join(self.by_name[a].key() for a in after)
        stage = Stage(name, cfg, train, tuple(after),
                      hashlib.sha1(key.encode()).hexdigest()[:12])
        self.stages.append(stage)
        self.by_name[name] = stage
        return name

    def add_teacher(self, seed: int) -> None:
        """The network that CLS.TEACHER (overrides included) names, trained alone."""
        t = ClsTrainer.setup_cfg(os.path.join(self.config_dir, "teacher.yaml"),
                                 self.opts).CLS.TEACHER
        arch = ["CLS.MODEL.ARCH", t.ARCH, "CLS.MODEL.WIDTHS", tuple(t.WIDTHS)]
        self.rows["teacher"][seed] = self.add(f"teacher_seed{seed}", "teacher.yaml", seed, arch)

    def add_row(self, row: str, seed: int, label: str = "", setting=()) -> str:
        """`row`'s run of `seed` with `setting`, reading its teachers (CLS.TEACHER.WEIGHTS)
        and, continued, the same seed's student alone (MODEL.WEIGHTS)."""
        reads = [f"teacher_seed{t}" for t in TEACHER_SEEDS[:_TEACHERS.get(row, 0)]]
        extra = ["CLS.TEACHER.WEIGHTS", tuple(map(self.final, reads))] if reads else []
        if row in _CONTINUED:
            reads.append(f"student_seed{seed}")
            extra += ["MODEL.WEIGHTS", self.final(reads[-1])]
        stem = ROWS[row][:-5]
        name = f"{stem}_{label}_seed{seed}" if label else f"{stem}_seed{seed}"
        if name not in self.by_name:
            self.add(name, ROWS[row], seed, [*extra, *setting], reads,
                     iters=self.extra_iters if row in _CONTINUED else self.iters)
        self.rows[row][seed] = name
        return name

    def add_search(self, row: str, candidates: Dict[str, Sequence]) -> None:
        """One run per candidate with the first seed; none is a row's run until chosen."""
        self.search[row] = {
            label: {"opts": [str(x) for x in setting],
                    "stage": self.add_row(row, self.seeds[0], label, setting)}
            for label, setting in candidates.items()}
        del self.rows[row][self.seeds[0]]

    def choose(self, row: str, records) -> List[str]:
        """The winner of `row`'s search on val (its run becomes the row's first seed); its
        overrides."""
        scores = {label: records[c["stage"]]["val/top1"] for label, c in self.search[row].items()}
        label = self.chosen[row] = pick_best(scores)
        self.rows[row][self.seeds[0]] = self.search[row][label]["stage"]
        return self.search[row][label]["opts"]

    def test_seeds(self, row: str, setting: Sequence) -> None:
        for seed in self.seeds[1:]:
            self.add_row(row, seed, self.chosen[row], setting)


def _row_summary(plan: _Plan, records, row: str) -> Dict:
    out = {"top1": [], "val_top1": [], "seeds": [], "seconds": []}
    for seed, name in sorted(plan.rows[row].items()):
        if name in records:
            rec = records[name]
            out["seeds"].append(seed)
            out["top1"].append(rec["test/top1"])
            out["val_top1"].append(rec["val/top1"])
            out["seconds"].append(round(rec["train_seconds"], 1))
    if row in plan.chosen:
        out["setting"] = plan.chosen[row]
    if out["top1"]:
        out.update(mean_spread(out["top1"]))
    return out


def _comparison(a: Dict, b: Dict) -> Dict:
    """`a` minus `b`: the difference of the means, each side's seed std, and the paired
    per-seed differences (mean and sample std over the seeds both have)."""
    tb = dict(zip(b["seeds"], b["top1"]))
    diffs = [v - tb[s] for s, v in zip(a["seeds"], a["top1"]) if s in tb]
    out = {"gain": a["mean"] - b["mean"], "std": a["std"], "baseline_std": b["std"],
           "per_seed": diffs}
    if diffs:
        out["paired"] = mean_spread(diffs)
    return out


def _summary(plan: _Plan, protocol: Dict, records) -> Dict:
    rows = {row: _row_summary(plan, records, row) for row in ROWS if ROWS[row]}
    teachers = records.get("teachers_eval")
    if teachers:
        rows["teacher ensemble (K=2)"] = {"top1": [teachers["ensemble/test/top1"]],
                                          "val_top1": [teachers["ensemble/val/top1"]],
                                          "teachers": list(TEACHER_SEEDS)}
        teachers = {k: v for k, v in teachers.items() if "/" in k}
    search = {}
    for row, cands in plan.search.items():
        search[row] = {"candidates": {
            label: {"opts": c["opts"], "val_top1": records[c["stage"]]["val/top1"]}
            for label, c in cands.items() if c["stage"] in records}}
        if row in plan.chosen:
            search[row]["chosen"] = plan.chosen[row]
    curves = {row: {str(seed): records[name]["curves"] for seed, name in plan.rows[row].items()
                    if name in records} for row in ROWS if ROWS[row]}
    comparisons = {f"{a} - {b}": _comparison(rows[a], rows[b]) for a, b in COMPARISONS
                   if rows[a].get("n") and rows[b].get("n")}
    return {"protocol": protocol, **{row: rows[row] for row in ROWS if row in rows},
            "comparisons": comparisons, "search": search, "teachers": teachers or {},
            "curves": curves}


def _panels(plan: _Plan, report: Dict) -> List:
    seed = str(plan.seeds[0])
    curves = report["curves"]
    val, grads = {}, {}
    for row in ("teacher", "student alone", "KD", "FitNets", "FNKD", *_CONTINUED):
        c = curves.get(row, {}).get(str(TEACHER_SEEDS[0]) if row == "teacher" else seed)
        if not c:
            continue
        x = [i + (plan.iters if row in _CONTINUED else 0) for i in c["iter"]]  # continued
        val[row] = (x, c["val/top1"])
        if row not in ("teacher", "student alone", "continued CE"):
            for k in (k for k in c if k.startswith("grad_norm/")):
                nan = float("nan")  # a term absent at that point (FitNets' two stages)
                grads[f"{row} {k.split('/', 1)[1]}"] = (x, [nan if v is None else v
                                                            for v in c[k]])
    search = {f"{row} {label}": [c["val_top1"]] for row, s in report["search"].items()
              for label, c in s["candidates"].items()}
    return [
        Bars("Fashion-MNIST test top-1", {row: report[row]["top1"] for row in ROWS
                                           if report.get(row, {}).get("top1")},
             ylabel="top-1 (%)", fmt=".2f", zoom=True),
        Bars(f"Validation search (seed {seed}, val top-1)", search, fmt=".2f", zoom=True),
        Curves(f"Val top-1 during training (seed {seed})", val, xlabel="iteration"),
        Curves(f"Per-loss gradient norm on the student (seed {seed})", grads,
               xlabel="iteration"),
    ]


def run_benchmark(config_dir: str, output_root: str, json_path: str, png_path: str,
                  seeds: Sequence[int], iters: int, extra_iters: int, command: str,
                  opts: Sequence[str] = (), jobs: int = 1) -> Dict:
    """Teachers, the validation searches, then every row over `seeds`; the results JSON
    (rewritten after every stage) and the PNG."""
    if len(seeds) < 2:
        raise ValueError("--seeds: give at least two (the search uses the first; a seed "
                         "spread needs more than one)")
    t0 = time.perf_counter()
    plan = _Plan(config_dir, output_root, seeds, iters, extra_iters, opts)
    ref = ClsTrainer.setup_cfg(os.path.join(config_dir, "student.yaml"), list(opts))
    d, sol = ref.CLS.DATA, ref.SOLVER
    cont = ClsTrainer.setup_cfg(os.path.join(config_dir, "continued_ce.yaml"), list(opts))
    protocol = {
        "dataset": f"Fashion-MNIST, {d.TRAIN_SIZE or 60000 - d.VAL_SIZE} train / "
                   f"{d.VAL_SIZE} val (SPLIT_SEED {d.SPLIT_SEED}) / "
                   f"{d.TEST_SIZE or 10000} official test images",
        "schedule": f"{iters} iterations, batch {ref.DATALOADER.BATCH_SIZE}, {sol.OPTIMIZER} "
                    f"{sol.BASE_LR} {sol.LR_SCHEDULER_NAME}, for the teachers, the student "
                    "alone, KD, FitNets and FNKD; val top-1 and per-loss gradient norms every "
                    f"{ref.CLS.CURVE_PERIOD} iterations",
        "fitnets": "the hint stage counts in the schedule: stage 1 + stage 2 = the "
                   "student's iterations (same optimizer steps and batches as KD alone); "
                   "stage 2 is KD with KD's chosen setting",
        "continuation": f"continued CE and MEAL V2 start from the same seed's student-alone "
                        f"model_final.pth and train {extra_iters} more iterations, "
                        f"{cont.SOLVER.BASE_LR} {cont.SOLVER.LR_SCHEDULER_NAME}",
        "teachers": f"seeds {list(TEACHER_SEEDS)}; KD, FitNets, FNKD distil from teacher "
                    f"{TEACHER_SEEDS[0]}, MEAL V2 from both",
        "search": f"seed {seeds[0]}, final val top-1, pick_best (ties to the first, the "
                  "paper's setting); the winner's run is its first test seed",
        "seeds": list(seeds),
        "overrides": list(opts),
    }

    def summary(records, complete=False):
        return _summary(plan, protocol, records)

    def run_phase():
        return run_stages(plan.stages, jobs, on_done=lambda recs: save_json(
            json_path, {"command": command, **summary(recs), "complete": False}))

    teachers = [f"teacher_seed{t}" for t in TEACHER_SEEDS]
    for t in TEACHER_SEEDS:
        plan.add_teacher(t)
    plan.add("teachers_eval", "meal_v2.yaml", 0,
             ["CLS.TEACHER.WEIGHTS", tuple(map(plan.final, teachers))], teachers,
             train=evaluate_teachers)
    for row in ("student alone", "continued CE"):
        for seed in seeds:
            plan.add_row(row, seed)
    for row in ("KD", "FNKD", "MEAL V2"):
        plan.add_search(row, SEARCH[row])
    records = run_phase()

    kd = plan.choose("KD", records)
    plan.add_search("FitNets", {
        label: [*kd, "CLS.FITNETS.STAGE1_ITERS", max(1, round(share * iters))]
        for label, share in FITNETS_STAGE1.items()})
    for row in ("KD", "FNKD", "MEAL V2"):
        plan.test_seeds(row, kd if row == "KD" else plan.choose(row, records))
    records = run_phase()

    plan.test_seeds("FitNets", plan.choose("FitNets", records))
    report = run_report(
        plan.stages, summary, json_path, png_path, lambda rep: _panels(plan, rep),
        f"Classification KD on Fashion-MNIST, {len(seeds)} seeds, {iters} + {extra_iters} "
        "iterations", command, jobs)
    report["total_wall_s"] = time.perf_counter() - t0  # every phase, not the last alone
    save_json(json_path, report)
    return report


def format_table(report: Dict) -> str:
    """The README table: row, chosen setting, test top-1 mean ± std (n), per-seed values."""
    lines = ["| method | setting (val search) | test top-1 (%) mean ± std | per seed |",
             "|---|---|---|---|"]
    for name in ROWS:
        row = report.get(name, {})
        if row.get("top1"):
            per = ", ".join(f"{v:.2f}" for v in row["top1"])
            lines.append(f"| {name} | {row.get('setting', '')} | "
                         f"{mean_std(row['top1'], 2)} (n={len(row['top1'])}) | {per} |")
    return "\n".join(lines)
