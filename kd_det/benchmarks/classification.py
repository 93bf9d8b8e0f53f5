"""Classification distillation on Fashion-MNIST: teachers, the student alone and every KD
method on the same student, data split and schedule, over several seeds.

Seed s trains teacher s; KD, FitNets and FNKD distil from teacher s, MEAL V2 from the
ensemble of teachers s and s+1 (mod the number of seeds), whose test top-1 is reported as
its own row.
"""
import os
from typing import Dict, List, Sequence

import torch

from ..classification import ClsTrainer
from ..classification.data import load_split
from ..classification.trainer import load_teacher
from .orchestrator import Stage, mean_spread, run_report
from .report import Bars, mean_std

__all__ = ["BENCH_METHODS", "ensemble_top1", "evaluate_ensemble", "format_table",
           "run_benchmark"]

# row name -> config file (None: the teacher ensemble, evaluated, not trained); the order
# of the table and of the chart.
BENCH_METHODS = {
    "teacher": "teacher.yaml",
    "teacher ensemble (K=2)": None,
    "student alone": "student.yaml",
    "KD": "kd.yaml",
    "FitNets": "fitnets.yaml",
    "FNKD": "fnkd.yaml",
    "MEAL V2": "meal_v2.yaml",
}


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


def evaluate_ensemble(cfg, resume: bool = False) -> Dict[str, float]:
    """A stage that trains nothing: the ensemble of CLS.TEACHER.WEIGHTS on the test set."""
    return {"test/top1": ensemble_top1(cfg, cfg.CLS.TEACHER.WEIGHTS)}


def run_benchmark(config_dir: str, output_root: str, json_path: str, png_path: str,
                  seeds: Sequence[int], iters: int, stage1_iters: int, command: str,
                  opts: Sequence[str] = (), jobs: int = 1) -> Dict:
    """Every row of BENCH_METHODS for each seed; the results JSON (after every run) + PNG."""
    if len(seeds) < 2:
        raise ValueError("--seeds: MEAL V2 needs two teachers, so give at least two seeds")
    common = ["SOLVER.MAX_ITER", str(iters), "SOLVER.CHECKPOINT_PERIOD", str(10**9), *opts]
    stages: List[Stage] = []
    row_of = {}  # stage name -> (row, seed)

    def add(row, seed, extra=(), after=()):
        config = BENCH_METHODS[row] or "meal_v2.yaml"
        name = f"{config[:-5] if BENCH_METHODS[row] else 'ensemble'}_seed{seed}"
        run_opts = [*common, "SEED", str(seed), "OUTPUT_DIR", os.path.join(output_root, name),
                    *extra]
        if row == "teacher":  # train the network that CLS.TEACHER (overrides included) names
            t = ClsTrainer.setup_cfg(os.path.join(config_dir, config), run_opts).CLS.TEACHER
            run_opts += ["CLS.MODEL.ARCH", t.ARCH, "CLS.MODEL.WIDTHS", str(tuple(t.WIDTHS))]
        cfg = ClsTrainer.setup_cfg(os.path.join(config_dir, config), run_opts)
        train = ClsTrainer.run if BENCH_METHODS[row] else evaluate_ensemble
        stages.append(Stage(name, cfg, train, after=tuple(after)))
        row_of[name] = (row, seed)

    for seed in seeds:
        add("teacher", seed)
    for i, seed in enumerate(seeds):
        pair = (f"teacher_seed{seed}", f"teacher_seed{seeds[(i + 1) % len(seeds)]}")
        weights = [os.path.join(output_root, t, "model_final.pth") for t in pair]
        one = ["CLS.TEACHER.WEIGHTS", str(tuple(weights[:1]))]
        both = ["CLS.TEACHER.WEIGHTS", str(tuple(weights))]
        add("teacher ensemble (K=2)", seed, both, pair)
        add("student alone", seed)
        add("KD", seed, one, pair[:1])
        add("FitNets", seed, one + ["CLS.FITNETS.STAGE1_ITERS", str(stage1_iters),
                                    "SOLVER.MAX_ITER", str(iters + stage1_iters)], pair[:1])
        add("FNKD", seed, one, pair[:1])
        add("MEAL V2", seed, both, pair)

    ref = stages[2].cfg  # the student alone
    d, sol = ref.CLS.DATA, ref.SOLVER
    protocol = {
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
    }

    def summary(records, complete):
        rows = {row: {"top1": [], "val_top1": [], "seeds": [], "seconds": []}
                for row in BENCH_METHODS}
        for stage in stages:
            if stage.name in records:
                rec, (row, seed) = records[stage.name], row_of[stage.name]
                rows[row]["seeds"].append(seed)
                rows[row]["top1"].append(rec["test/top1"])
                rows[row]["val_top1"].append(rec.get("val/top1"))
                rows[row]["seconds"].append(round(rec["train_seconds"], 1))
        for r in rows.values():
            if r["top1"]:
                r.update(mean_spread(r["top1"]))
        return {"protocol": protocol, **rows}

    return run_report(
        stages, summary, json_path, png_path,
        lambda report: [Bars("Fashion-MNIST test top-1",
                             {row: report[row]["top1"] for row in BENCH_METHODS},
                             ylabel="top-1 (%)")],
        f"Classification KD, {len(seeds)} seeds, {iters} iters", command, jobs)


def format_table(report: Dict) -> str:
    """The README table: method, test top-1 mean ± std (n seeds), per-seed values."""
    lines = ["| method | test top-1 (%) mean ± std | per seed |", "|---|---|---|"]
    for name in BENCH_METHODS:
        row = report[name]
        if row["top1"]:
            per = ", ".join(f"{v:.2f}" for v in row["top1"])
            lines.append(f"| {name} | {mean_std(row['top1'], 2)} (n={len(row['top1'])}) | "
                         f"{per} |")
    return "\n".join(lines)
