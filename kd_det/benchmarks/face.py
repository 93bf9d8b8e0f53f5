"""Low-resolution face recognition KD (Wang et al., ICCV-W 2019) on the Olivetti faces:
validation search, plateau schedule, test once over seeds.

- Splits: per identity, FACE.DATA.TEST_PER_IDENTITY test faces, VAL_PER_IDENTITY
  validation faces and the rest to train (fixed by SPLIT_SEED). Validation chooses the KD
  weights and draws the learning curves; the test faces are read once, for the chosen
  settings only.
- The paper's comparison: the student alone on the LR-augmented set against KD from the
  teacher trained on original-resolution faces and kept fixed (it sees the original face,
  the student its LR copy), with MK-MMD (the paper) and with the normalised-feature L2, per
  probe resolution, over every seed. Every student trains on one schedule.
- Search: for each feature loss, every candidate of SEARCH trains with every seed; the
  best validation score (rank-1 averaged over the probes of at most SCORE_MAX_PX and over
  the seeds) wins (orchestrator.pick_best, the default listed first), and the winner's
  runs are the row's test runs.
- Plateau check: the student alone at twice the schedule, read on validation only.
- Diagnostics: every KD run logs each term's loss, its gradient norm on the student
  relative to CE's and its cosine with it, and the teacher's accuracy on its own and on the
  student's training inputs; the teachers' rank-1 on the LR probes (what the student sees
  at test time); the training wall-clock of "HR teacher kept fixed + KD" against "teacher
  retrained on the LR-augmented set + KD" and the CPU time per face of both networks.
"""
import functools
import hashlib
import json
import os
import statistics
from typing import Dict, List, NamedTuple, Optional, Sequence

import torch

from ..auxiliary.face import FaceTrainer
from ..auxiliary.face.models import build_face_net
from ..auxiliary.face.trainer import probe_name
from .orchestrator import (
    Stage,
    config_fingerprint,
    pick_best,
    read_diagnostics,
    run_report,
)
from .report import Bars, Curves, mean_spread, mean_std
from .timing import interleaved_times

__all__ = ["ROWS", "SCORE_MAX_PX", "SEARCH", "format_tables", "quick_settings", "read_curve",
           "run_benchmark", "time_per_face", "train_run"]


class Row(NamedTuple):
    config: str
    label: str  # in the tables
    short: str  # in the chart
    teacher: Optional[str]  # the run it distils from


# The tables' and the chart's order. The teachers train once (the first seed).
ROWS = {
    "teacher": Row("teacher.yaml", "teacher (HR faces only, kept fixed)", "teacher HR", None),
    "teacher_lr": Row("teacher_lr.yaml", "teacher retrained on the LR-augmented set",
                      "teacher LR-retrained", None),
    "student": Row("student.yaml", "(a) student alone, LR-augmented set", "(a) student",
                   None),
    "kd_l2": Row("kd_l2.yaml", "(b) KD, normalised-feature L2", "(b) KD L2", "teacher"),
    "kd_mmd": Row("kd_mmd.yaml", "(c) KD, MK-MMD (paper)", "(c) KD MK-MMD", "teacher"),
}
TEACHERS = ("teacher", "teacher_lr")
# The validation search of each KD row: candidate -> FACE.KD overrides, the repository's
# default first (the paper gives no values), then one change at a time: the feature weight
# lambda3 ten times lower and higher (imitating the HR teacher's embedding from an 8-px
# face may hurt at a high weight), and a lower KD temperature T (the soft term's gradient
# is T (p_s - p_t): it dominates CE once the training faces are fitted).
_DEFAULT = {"SOFT_WEIGHT": 1.0, "FEAT_WEIGHT": 1.0, "TEMPERATURE": 4.0}
SEARCH = {row: {"default": _DEFAULT, "feat0.1": {**_DEFAULT, "FEAT_WEIGHT": 0.1},
                "feat10": {**_DEFAULT, "FEAT_WEIGHT": 10.0},
                "T2": {**_DEFAULT, "TEMPERATURE": 2.0}}
          for row in ("kd_mmd", "kd_l2")}
# The validation score averages rank-1 over the probes of at most this many pixels: the
# low resolutions the method is for.
SCORE_MAX_PX = 16


def quick_settings() -> Dict:
    """The smoke run of --quick: the whole pipeline with tiny networks and a few
    iterations (seconds per stage)."""
    return {"iters": 6, "opts": [
        "FACE.MODEL.WIDTHS", "(4, 8)", "FACE.TEACHER.WIDTHS", "(4, 8)", "FACE.EMBED_DIM", "8",
        "DATALOADER.BATCH_SIZE", "8", "SOLVER.WARMUP_ITERS", "0", "SOLVER.LOG_PERIOD", "2",
        "FACE.TEST.VAL_PERIOD", "2", "FACE.KD.DIAGNOSTICS_PERIOD", "2"]}


def read_curve(output_dir: str) -> Dict[str, List[float]]:
    """The validation curve that FACE.TEST.VAL_PERIOD wrote: "iter" and "val/rank1/<probe>"
    lists (empty without one)."""
    path = os.path.join(output_dir, "curve.json")
    if not os.path.isfile(path):
        return {"iter": []}
    with open(path) as f:
        points = json.load(f)
    keys = [k for k in points[0] if k.startswith("val/")] if points else []
    return {"iter": [p["iter"] for p in points], **{k: [p[k] for p in points] for k in keys}}


def train_run(cfg, resume: bool = False) -> Dict:
    """A stage: FaceTrainer's test and validation rank-1, the validation curve and the
    mean / first / last of every kd_diag/ scalar it logged."""
    results = FaceTrainer.run(cfg, resume=resume)
    return {**results, "curve": read_curve(cfg.OUTPUT_DIR),
            "diagnostics": read_diagnostics(cfg.OUTPUT_DIR)}


def val_score(values: Dict[str, float], sizes: Sequence[int]) -> float:
    """Mean validation rank-1 over the probes of 1..SCORE_MAX_PX pixels."""
    low = [s for s in sizes if 0 < s <= SCORE_MAX_PX]
    return statistics.fmean(values[f"val/rank1/{probe_name(s)}"] for s in low)


@torch.no_grad()
def time_per_face(cfg, batch_size: int = 64) -> Dict[str, Dict[str, float]]:
    """Median CPU milliseconds per face of the teacher and student embedding networks, one
    face at a time (latency) and per face in a batch (throughput), timed round-robin so
    that the load of other jobs weighs on both alike; and their parameter counts."""
    nets = {name: build_face_net(node, cfg).eval()
            for name, node in (("teacher", cfg.FACE.TEACHER), ("student", cfg.FACE.MODEL))}
    inputs = {"batch1": torch.rand(1, 1, 64, 64), "batched": torch.rand(batch_size, 1, 64, 64)}
    times = interleaved_times(
        {(name, b): functools.partial(net.embed, x)
         for name, net in nets.items() for b, x in inputs.items()}, warmup=5, repeats=30)
    return {name: {
        "ms_per_face_batch1": 1e3 * statistics.median(times[name, "batch1"]),
        "ms_per_face_batched": 1e3 * statistics.median(times[name, "batched"]) / batch_size,
        "batch_size": batch_size,
        "params": sum(p.numel() for p in net.parameters()),
    } for name, net in nets.items()}


class _Plan:
    """Every stage of the benchmark, known up front: the search trains each candidate with
    every seed, so no stage waits for a choice."""

    def __init__(self, config_dir, output_root, seeds, iters, opts):
        self.config_dir, self.output_root = config_dir, output_root
        self.seeds, self.iters, self.opts = list(seeds), iters, list(opts)
        self.stages: Dict[str, Stage] = {}
        self.runs: Dict[str, Dict[int, str]] = {}  # row or candidate key -> seed -> stage

    def add(self, key: str, row: str, seed: int, extra=(), iters: int = 0) -> None:
        """`row`'s config with the common overrides and `extra`; a KD run's fingerprint
        covers its teacher's, so that it reruns when the teacher does."""
        r = ROWS[row]
        name = key if row in TEACHERS else f"{key}_seed{seed}"
        run_opts = ["SOLVER.MAX_ITER", str(iters or self.iters), "SOLVER.CHECKPOINT_PERIOD",
                    str(10**9), *self.opts, "SEED", str(seed),
                    "OUTPUT_DIR", os.path.join(self.output_root, name), *map(str, extra)]
        if r.teacher is not None:
            run_opts += ["FACE.TEACHER.WEIGHTS",
                         os.path.join(self.output_root, r.teacher, "model_final.pth")]
        cfg = FaceTrainer.setup_cfg(os.path.join(self.config_dir, r.config), run_opts)
        after = (r.teacher,) if r.teacher else ()
        key_text = config_fingerprint(cfg) + "".join(self.stages[a].key() for a in after)
        self.stages[name] = Stage(name, cfg, train_run, after,
                                  hashlib.sha1(key_text.encode()).hexdigest()[:12])
        self.runs.setdefault(key, {})[seed] = name


def _candidate_key(row: str, label: str) -> str:
    return f"{row}_{label}"


def _mean_curve(records, names: Sequence[str], sizes: Sequence[int]) -> Dict[str, List]:
    """The validation score over iterations, averaged over the runs that have it all."""
    curves = [records[n]["curve"] for n in names if n in records]
    curves = [c for c in curves if c["iter"]]
    if not curves:
        return {"iter": [], "val_score": []}
    iters = curves[0]["iter"]
    scores = [[val_score({k: c[k][i] for k in c if k != "iter"}, sizes) for c in curves]
              for i in range(len(iters))]
    return {"iter": iters, "val_score": [statistics.fmean(s) for s in scores]}


def _diagnostics(records, names: Sequence[str]) -> Dict[str, Dict[str, float]]:
    """Each kd_diag/ scalar's mean over training and last value, averaged over `names`."""
    diags = [records[n]["diagnostics"] for n in names if n in records]
    keys = sorted({k for d in diags for k in d})
    return {k: {stat: statistics.fmean(d[k][stat] for d in diags if k in d)
                for stat in ("mean", "last")} for k in keys}


def run_benchmark(config_dir: str, output_root: str, json_path: str, png_path: str,
                  seeds: Sequence[int], iters: int, command: str,
                  opts: Sequence[str] = (), jobs: int = 1) -> Dict:
    """The teachers, the student alone (and at twice the schedule), every search candidate
    of both KD rows over every seed; the results JSON (after every run) with the search,
    the chosen rows on test, the curves and the diagnostics, and the PNG."""
    plan = _Plan(config_dir, output_root, seeds, iters, opts)
    for row in TEACHERS:
        plan.add(row, row, seeds[0])
    for seed in seeds:
        plan.add("student", "student", seed)
    for row, cands in SEARCH.items():
        for label, kd in cands.items():
            extra = [x for k, v in kd.items() for x in (f"FACE.KD.{k}", v)]
            for seed in seeds:
                plan.add(_candidate_key(row, label), row, seed, extra)
    for seed in seeds:
        plan.add("student_x2", "student", seed, iters=2 * iters)

    ref = next(s.cfg for s in plan.stages.values() if s.cfg.FACE.METHOD == "kd")
    f, sol = ref.FACE, ref.SOLVER
    sizes = tuple(f.TEST.PROBE_SIZES)
    probes = [probe_name(s) for s in sizes]
    low = [probe_name(s) for s in sizes if 0 < s <= SCORE_MAX_PX]
    protocol = {
        "dataset": f"Olivetti faces, {f.NUM_IDENTITIES} identities; per identity "
                   f"{f.DATA.TEST_PER_IDENTITY} test, {f.DATA.VAL_PER_IDENTITY} validation "
                   f"faces (SPLIT_SEED {f.DATA.SPLIT_SEED}), the others train",
        "metric": "rank-1 identification (%): each test (or validation) face, downscaled to "
                  "the probe size and resized back to 64x64, against the original-resolution "
                  "training faces (cosine, nearest face)",
        "lr_augmentation": f"p={f.LR.PROB}, sizes {tuple(f.LR.SIZES)} px, blur with "
                           f"probability {f.LR.BLUR_PROB}, sigma {tuple(f.LR.BLUR_SIGMA)}",
        "loss": "lambda1 CE + lambda2 T^2 KL + lambda3 feature loss (MK-MMD or normalised "
                "L2) on L2-normalised embeddings; the teacher sees the original face, the "
                "student its LR-augmented copy",
        "schedule": f"{iters} iterations, batch {ref.DATALOADER.BATCH_SIZE}, {sol.OPTIMIZER} "
                    f"{sol.BASE_LR} {sol.LR_SCHEDULER_NAME}, for every run; validation "
                    f"rank-1 every {f.TEST.VAL_PERIOD} iterations; the plateau check trains "
                    f"the student alone {2 * iters} iterations",
        "search": f"for each KD row, every candidate over seeds {list(seeds)}; score = "
                  f"validation rank-1 averaged over the probes {low} and the seeds; "
                  "pick_best (ties to the first listed, the default); the winner's runs "
                  "are the row's test runs",
        "teachers": f"each teacher trained once (seed {seeds[0]}) and shared by all seeds",
        "diagnostics": f"every {f.KD.DIAGNOSTICS_PERIOD} iterations of a KD run: each "
                       "weighted term's value, its gradient norm on the student's "
                       "parameters, its ratio to and cosine with CE's gradient, and the "
                       "teacher's top-1 on its own (original) and on the student's "
                       "(LR-augmented) training inputs",
        "wall_s": f"whole run (build, train, evaluations); {jobs} run(s) at a time",
        "seeds": list(seeds),
        "overrides": list(opts),
    }

    def row_summary(records, names: Dict[int, str]) -> Dict:
        out = {"seeds": [], "wall_s": [], "rank1": {p: [] for p in probes},
               "val_rank1": {p: [] for p in probes}, "val_score": []}
        for seed, name in names.items():
            if name not in records:
                continue
            rec = records[name]
            out["seeds"].append(seed)
            out["wall_s"].append(rec["train_seconds"])
            for p in probes:
                out["rank1"][p].append(rec[f"rank1/{p}"])
                out["val_rank1"][p].append(rec[f"val/rank1/{p}"])
            out["val_score"].append(val_score(rec, sizes))
        return out

    def summary(records, complete):
        search, chosen = {}, {}
        for row, cands in SEARCH.items():
            table = {}
            for label, kd in cands.items():
                names = plan.runs[_candidate_key(row, label)]
                s = row_summary(records, names)
                table[label] = {
                    "weights": kd, "val_score_per_seed": s["val_score"],
                    "val_rank1": {p: statistics.fmean(v) for p, v in s["val_rank1"].items()
                                  if v},
                    "diagnostics": _diagnostics(records, list(names.values()))}
                if len(s["seeds"]) == len(seeds):
                    table[label]["val_score"] = statistics.fmean(s["val_score"])
            scores = {k: c.get("val_score", float("nan")) for k, c in table.items()}
            search[row] = {"candidates": table}
            if all(v == v for v in scores.values()):
                chosen[row] = search[row]["chosen"] = pick_best(scores)
        runs = {row: plan.runs[row] for row in ("teacher", "teacher_lr", "student")}
        runs.update({row: plan.runs[_candidate_key(row, label)]
                     for row, label in chosen.items()})
        rows = {}
        for row in (r for r in ROWS if r in runs):
            rows[row] = {"label": ROWS[row].label, **row_summary(records, runs[row])}
            if row in chosen:
                rows[row]["setting"] = {"candidate": chosen[row], **SEARCH[row][chosen[row]]}
        curves = {row: _mean_curve(records, list(names.values()), sizes)
                  for row, names in {**runs, "student_x2": plan.runs["student_x2"]}.items()}
        x2 = row_summary(records, plan.runs["student_x2"])
        out = {"protocol": protocol, "search": search, "rows": rows, "curves": curves,
               "plateau_check": {
                   "val_score": {f"{iters} iterations": rows["student"]["val_score"],
                                 f"{2 * iters} iterations": x2["val_score"]},
                   "val_rank1_2x": x2["val_rank1"]},
               "diagnostics": {
                   "teacher_rank1": {row: {split: {p: rows[row][key][p][0] for p in probes}
                                           for split, key in (("val", "val_rank1"),
                                                              ("test", "rank1"))}
                                     for row in TEACHERS if rows[row]["seeds"]},
                   **{row: _diagnostics(records, list(runs[row].values()))
                      for row in chosen}}}
        if complete:
            for row in rows.values():
                row["summary"] = {p: mean_spread(v) for p, v in row["rank1"].items()}
            out["pipelines_wall_s"] = _pipelines(rows)
            out["speed"] = time_per_face(ref)
            out["speed"]["student_speedup_batch1"] = (
                out["speed"]["teacher"]["ms_per_face_batch1"]
                / out["speed"]["student"]["ms_per_face_batch1"])
            out["table_markdown"] = format_tables(out)
        return out

    def panels(report):
        rows = report["rows"]
        bars = [Bars(f"test, probe {p}", {ROWS[n].short: r["rank1"][p] for n, r in rows.items()},
                     ylabel="rank-1 (%)") for p in probes]
        search = {f"{row[3:]} {label}": c["val_score_per_seed"]
                  for row, s in report["search"].items() for label, c in s["candidates"].items()}
        names = {**{n: r.short for n, r in ROWS.items()},
                 "student_x2": "(a) student, 2x schedule"}
        curves = {names[n]: (c["iter"], c["val_score"]) for n, c in report["curves"].items()
                  if n not in TEACHERS}
        return bars + [
            Bars(f"search: val rank-1, probes <= {SCORE_MAX_PX} px", search,
                 ylabel="rank-1 (%)", zoom=True),
            Curves(f"val rank-1, probes <= {SCORE_MAX_PX} px (seed mean)", curves,
                   xlabel="iteration")]

    return run_report(list(plan.stages.values()), summary, json_path, png_path, panels,
                      f"LR face KD on Olivetti, {len(seeds)} seeds, {iters} iterations",
                      command, jobs)


def _pipelines(rows: Dict) -> Dict:
    """Wall-clock of "HR teacher kept fixed + KD" against "teacher retrained + KD": the KD
    run is the same in both (same networks, same iterations), the retraining is extra."""
    kd = mean_spread(rows["kd_mmd"]["wall_s"])["mean"]
    retrain = rows["teacher_lr"]["wall_s"][0]
    return {
        "fixed_teacher": {"teacher_training": 0.0, "kd": kd, "total": kd,
                          "note": "the HR teacher exists already (trained once, "
                                  f"{rows['teacher']['wall_s'][0]:.0f} s, for HR faces)"},
        "retrained_teacher": {"teacher_training": retrain, "kd": kd, "total": retrain + kd},
        "ratio_retrained_over_fixed": (retrain + kd) / kd,
    }


def format_tables(report: Dict) -> str:
    """README tables: test rank-1 mean ± std per probe; the validation search; the
    diagnostics; pipeline wall-clock; CPU time per face."""
    rows = report["rows"]
    probes = list(next(iter(rows.values()))["rank1"])
    lines = ["| method | " + " | ".join(probes) + " | train s / run |",
             "|---|" + "---|" * (len(probes) + 1)]
    for row in rows.values():
        cells = [mean_std(row["rank1"][p]) for p in probes]
        lines.append(f"| {row['label']} (n={len(row['seeds'])}) | " + " | ".join(cells)
                     + f" | {mean_spread(row['wall_s'])['mean']:.0f} |")
    lines += ["", f"| search (val rank-1, probes <= {SCORE_MAX_PX} px) | lambda2 | lambda3 | T "
                  "| val score | per seed | feature / CE grad | KD / CE grad | chosen |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row, s in report["search"].items():
        for label, c in s["candidates"].items():
            w, d = c["weights"], c["diagnostics"]
            feat = next((v["mean"] for k, v in d.items()
                         if k.startswith("grad_ratio/") and k != "grad_ratio/kd"), 0.0)
            kd = d.get("grad_ratio/kd", {"mean": 0.0})["mean"]
            lines.append(
                f"| {ROWS[row].short} {label} | {w['SOFT_WEIGHT']} | {w['FEAT_WEIGHT']} | "
                f"{w['TEMPERATURE']} | {c.get('val_score', float('nan')):.1f} | "
                + ", ".join(f"{v:.1f}" for v in c["val_score_per_seed"])
                + f" | {feat:.2f} | {kd:.2f} | {'yes' if s.get('chosen') == label else ''} |")
    plateau = report["plateau_check"]["val_score"]
    lines += ["", "| student alone, plateau check | val score (mean ± std) |", "|---|---|"]
    lines += [f"| {k} | {mean_std(v)} |" for k, v in plateau.items()]
    pipe = report["pipelines_wall_s"]
    lines += ["", "| pipeline | teacher training (s) | KD (s) | total (s) |", "|---|---|---|---|"]
    for key, label in (("fixed_teacher", "HR teacher kept fixed + KD (paper)"),
                       ("retrained_teacher", "teacher retrained on LR set + KD")):
        p = pipe[key]
        lines.append(f"| {label} | {p['teacher_training']:.0f} | {p['kd']:.0f} | "
                     f"{p['total']:.0f} |")
    lines.append(f"| ratio | | | {pipe['ratio_retrained_over_fixed']:.2f}x |")
    speed = report["speed"]
    lines += ["", "| network | parameters | ms / face (batch 1) | ms / face "
                  f"(batch {speed['student']['batch_size']}) |", "|---|---|---|---|"]
    for name in ("teacher", "student"):
        s = speed[name]
        lines.append(f"| {name} | {s['params']:,} | {s['ms_per_face_batch1']:.2f} | "
                     f"{s['ms_per_face_batched']:.3f} |")
    lines.append(f"| student speed-up (batch 1) | | {speed['student_speedup_batch1']:.1f}x | |")
    return "\n".join(lines)
