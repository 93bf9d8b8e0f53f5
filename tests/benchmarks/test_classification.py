"""tools/bench_cls_kd.py --quick end to end: searches decided on val, every row over the
seeds, MEAL V2 and its control continued from the student alone, curves and diagnostics in
the JSON, finished runs reused; and a stage reruns when a stage it reads changes."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from kd_det.benchmarks import classification
from kd_det.benchmarks.classification import ROWS, SEARCH, format_table, run_benchmark
from kd_det.benchmarks.orchestrator import pick_best

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(ROOT, "configs", "classification")

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(run_dir):
    with open(os.path.join(run_dir, "config.yaml")) as f:
        return yaml.safe_load(f)


def test_quick_benchmark_end_to_end_and_reused(tmp_path, fashion_mnist):
    subprocess.run([sys.executable, "tools/bench_cls_kd.py", "--quick", "--jobs", "1",
                    "--output-root", str(tmp_path / "runs")], cwd=ROOT, check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
    out = tmp_path / "runs_quick"
    saved = json.load(open(out / "cls_kd.json"))
    quick = classification.quick_settings()
    assert saved["complete"] and "--quick" in saved["command"]
    assert os.path.getsize(out / "cls_kd.png") > 0
    for row in ROWS:
        n = {"teacher": 2, "teacher ensemble (K=2)": 1}.get(row, 3)
        assert len(saved[row]["top1"]) == n and all(0 <= v <= 100 for v in saved[row]["top1"])
    # Each search: its candidates in order, the winner pick_best's on val, and the winner's
    # run the row's first seed.
    assert list(saved["search"]) == ["KD", "FNKD", "MEAL V2", "FitNets"]
    assert list(saved["search"]["KD"]["candidates"]) == list(SEARCH["KD"])
    for row, search in saved["search"].items():
        scores = {k: c["val_top1"] for k, c in search["candidates"].items()}
        assert search["chosen"] == pick_best(scores) == saved[row]["setting"]
        assert saved[row]["val_top1"][0] == scores[search["chosen"]]
    kd = saved["search"]["KD"]["candidates"][saved["search"]["KD"]["chosen"]]["opts"]
    for c in saved["search"]["FitNets"]["candidates"].values():
        assert c["opts"][:len(kd)] == kd  # FitNets' KD stage is KD's chosen setting
    # MEAL V2 and its control: the same seed's student alone, trained on extra_iters.
    meal = saved["MEAL V2"]["setting"]
    for seed in (0, 1, 2):
        student = str(out / f"student_seed{seed}" / "model_final.pth")
        for run in (f"continued_ce_seed{seed}", f"meal_v2_{meal}_seed{seed}"):
            cfg = _config(out / run)
            assert cfg["MODEL"]["WEIGHTS"] == student
            assert cfg["SOLVER"]["MAX_ITER"] == quick["extra_iters"]
        assert _config(out / f"kd_{saved['KD']['setting']}_seed{seed}")["SOLVER"]["MAX_ITER"] \
            == quick["iters"]
    assert saved["comparisons"]["MEAL V2 - continued CE"]["paired"]["n"] == 3
    assert len(saved["comparisons"]["KD - student alone"]["per_seed"]) == 3
    curve = saved["curves"]["student alone"]["0"]
    assert curve["iter"][-1] == quick["iters"] and len(curve["val/top1"]) == len(curve["iter"])
    assert "grad_norm/kd" in saved["curves"]["KD"]["1"]
    assert "grad_norm/disc" in saved["curves"]["MEAL V2"]["2"]
    assert {"teacher0/train/top1", "ensemble/test/top1",
            "teacher1/train/confidence"} <= set(saved["teachers"])
    assert format_table(saved).count("\n") == len(ROWS) + 1

    stamp = os.path.getmtime(out / "kd_T4_soft0.9_seed0" / "model_final.pth")
    again = run_benchmark(CONFIGS, str(out), str(tmp_path / "r.json"), str(tmp_path / "r.png"),
                          [0, 1, 2], quick["iters"], quick["extra_iters"], "cmd", quick["opts"])
    assert os.path.getmtime(out / "kd_T4_soft0.9_seed0" / "model_final.pth") == stamp
    assert again["KD"]["top1"] == saved["KD"]["top1"]
    with pytest.raises(ValueError, match="--seeds"):
        run_benchmark(CONFIGS, str(out), "r.json", "r.png", [0], 4, 2, "c")
    assert torch.get_num_threads() == 1


def test_a_stage_reruns_when_a_stage_it_reads_changes(tmp_path):
    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS, configs)

    def plan():
        p = classification._Plan(str(configs), str(tmp_path / "runs"), [0, 1], 10, 5, [])
        for t in (0, 1):
            p.add_teacher(t)
        p.add_row("student alone", 0)
        return p, {row: p.by_name[p.add_row(row, 0)] for row in ("KD", "MEAL V2")}

    _, before = plan()
    meal = before["MEAL V2"]
    assert meal.after == ("teacher_seed0", "teacher_seed1", "student_seed0")
    assert meal.cfg.MODEL.WEIGHTS == str(tmp_path / "runs" / "student_seed0" / "model_final.pth")
    assert meal.cfg.SOLVER.MAX_ITER == 5 and before["KD"].cfg.SOLVER.MAX_ITER == 10
    with open(configs / "teacher.yaml", "a") as f:
        f.write("SOLVER:\n  BASE_LR: 0.1\n")
    _, after = plan()
    for row in ("KD", "MEAL V2"):
        assert after[row].cfg.dump() == before[row].cfg.dump()  # its own config: the same
        assert after[row].key() != before[row].key()  # but its teacher is another
