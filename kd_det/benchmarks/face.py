"""Low-resolution face recognition KD (Wang et al., ICCV-W 2019), measured: rank-1
identification per probe resolution of (a) the student alone on the LR-augmented set,
(b) KD with the normalised-feature L2 and (c) KD with MK-MMD, over seeds; the training
wall-clock of "HR teacher kept fixed + KD" against "teacher retrained on the LR-augmented
set + KD"; student and teacher CPU time per face.

Each teacher is trained once (seed of the first run) and shared by every seed of the
students, as the paper's fixed teacher is. With one job the runs go one after another in
this process, so that only the load of other jobs on the machine separates their
wall-clock times.
"""
import functools
import os
import statistics
from typing import Dict, NamedTuple, Optional, Sequence

import torch

from ..face import FaceTrainer
from ..face.models import build_face_net
from ..face.trainer import probe_name
from .orchestrator import Stage, mean_spread, run_report
from .report import Bars, mean_std
from .timing import interleaved_times

__all__ = ["RUNS", "format_tables", "run_benchmark", "time_per_face"]


class Run(NamedTuple):
    config: str
    label: str  # in the table
    short: str  # in the chart
    teacher: Optional[str]  # the run it distils from


# The table's and the chart's order.
RUNS = {
    "teacher": Run("teacher.yaml", "teacher (HR faces only, kept fixed)", "teacher HR", None),
    "teacher_lr": Run("teacher_lr.yaml", "teacher retrained on the LR-augmented set",
                      "teacher LR-retrained", None),
    "student": Run("student.yaml", "(a) student alone, LR-augmented set", "(a) student",
                   None),
    "kd_l2": Run("kd_l2.yaml", "(b) KD, normalised-feature L2", "(b) KD L2", "teacher"),
    "kd_mmd": Run("kd_mmd.yaml", "(c) KD, MK-MMD (paper)", "(c) KD MK-MMD", "teacher"),
    "kd_mmd_lr_teacher": Run("kd_mmd_lr_teacher.yaml", "KD, MK-MMD from the retrained teacher",
                             "KD MK-MMD, LR teacher", "teacher_lr"),
}
TEACHERS = ("teacher", "teacher_lr")


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


def run_benchmark(config_dir: str, output_root: str, json_path: str, png_path: str,
                  seeds: Sequence[int], iters: int, command: str,
                  opts: Sequence[str] = (), jobs: int = 1) -> Dict:
    """The teachers, then every student row for each seed; the results JSON (after every
    run), with the pipelines' wall-clock and the CPU time per face, and the PNG."""
    common = ["SOLVER.MAX_ITER", str(iters), "SOLVER.CHECKPOINT_PERIOD", str(10**9), *opts]
    ref = FaceTrainer.setup_cfg(os.path.join(config_dir, "kd_mmd.yaml"), common)
    f, sol = ref.FACE, ref.SOLVER
    probes = [probe_name(s) for s in f.TEST.PROBE_SIZES]
    stages, row_of = [], {}

    def add(name, seed):
        run = RUNS[name]
        out = name if name in TEACHERS else f"{name}_seed{seed}"
        run_opts = [*common, "SEED", str(seed), "OUTPUT_DIR", os.path.join(output_root, out)]
        if run.teacher is not None:
            run_opts += ["FACE.TEACHER.WEIGHTS",
                         os.path.join(output_root, run.teacher, "model_final.pth")]
        cfg = FaceTrainer.setup_cfg(os.path.join(config_dir, run.config), run_opts)
        stages.append(Stage(out, cfg, FaceTrainer.run, after=(run.teacher,) if run.teacher else ()))
        row_of[out] = (name, seed)

    for name in TEACHERS:
        add(name, seeds[0])
    for seed in seeds:
        for name in RUNS:
            if name not in TEACHERS:
                add(name, seed)
    protocol = {
        "dataset": f"Olivetti faces, {f.NUM_IDENTITIES} identities; per identity "
                   f"{f.DATA.TEST_PER_IDENTITY} held-out faces (SPLIT_SEED "
                   f"{f.DATA.SPLIT_SEED}), the others train",
        "metric": "rank-1 identification (%): each held-out face, downscaled to the probe "
                  "size and resized back to 64x64, against the original-resolution "
                  "training faces (cosine, nearest face)",
        "lr_augmentation": f"p={f.LR.PROB}, sizes {tuple(f.LR.SIZES)} px, blur with "
                           f"probability {f.LR.BLUR_PROB}, sigma {tuple(f.LR.BLUR_SIGMA)}",
        "loss": f"{f.KD.HARD_WEIGHT} CE + {f.KD.SOFT_WEIGHT} T^2 KL (T={f.KD.TEMPERATURE})"
                f" + {f.KD.FEAT_WEIGHT} feature loss on L2-normalised embeddings",
        "schedule": f"{iters} iterations, batch {ref.DATALOADER.BATCH_SIZE}, "
                    f"{sol.OPTIMIZER} {sol.BASE_LR} {sol.LR_SCHEDULER_NAME} for every run "
                    "(short CPU schedule)",
        "teachers": f"each teacher trained once (seed {seeds[0]}) and shared by all seeds",
        "wall_s": f"whole run (build, train, final evaluation); {jobs} run(s) at a time",
        "seeds": list(seeds),
        "overrides": list(opts),
    }

    def summary(records, complete):
        rows = {name: {"label": r.label, "seeds": [], "wall_s": [],
                       "rank1": {p: [] for p in probes}} for name, r in RUNS.items()}
        for stage in stages:
            if stage.name in records:
                rec, (name, seed) = records[stage.name], row_of[stage.name]
                rows[name]["seeds"].append(seed)
                rows[name]["wall_s"].append(rec["train_seconds"])
                for p in probes:
                    rows[name]["rank1"][p].append(rec[f"rank1/{p}"])
        out = {"protocol": protocol, "rows": rows}
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

    return run_report(
        stages, summary, json_path, png_path,
        lambda report: [Bars(f"probe {p}", {r.short: report["rows"][n]["rank1"][p]
                                            for n, r in RUNS.items()}, ylabel="rank-1 (%)")
                        for p in probes],
        f"LR face KD on Olivetti, {len(seeds)} seeds, {iters} iterations", command, jobs)


def _pipelines(rows: Dict) -> Dict:
    """Wall-clock of "HR teacher kept fixed + KD" against "teacher retrained + KD"."""
    kd_fixed = mean_spread(rows["kd_mmd"]["wall_s"])["mean"]
    kd_retrained = mean_spread(rows["kd_mmd_lr_teacher"]["wall_s"])["mean"]
    retrain = rows["teacher_lr"]["wall_s"][0]
    return {
        "fixed_teacher": {"teacher_training": 0.0, "kd": kd_fixed, "total": kd_fixed,
                          "note": "the HR teacher exists already (trained once, "
                                  f"{rows['teacher']['wall_s'][0]:.0f} s, for HR faces)"},
        "retrained_teacher": {"teacher_training": retrain, "kd": kd_retrained,
                              "total": retrain + kd_retrained},
        "ratio_retrained_over_fixed": (retrain + kd_retrained) / kd_fixed,
    }


def format_tables(report: Dict) -> str:
    """README tables: rank-1 mean ± std per probe; pipeline wall-clock; CPU time per face."""
    rows = report["rows"]
    probes = list(next(iter(rows.values()))["rank1"])
    lines = ["| method | " + " | ".join(probes) + " | train s / run |",
             "|---|" + "---|" * (len(probes) + 1)]
    for row in rows.values():
        cells = [mean_std(row["rank1"][p]) for p in probes]
        lines.append(f"| {row['label']} (n={len(row['seeds'])}) | " + " | ".join(cells)
                     + f" | {mean_spread(row['wall_s'])['mean']:.0f} |")
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
