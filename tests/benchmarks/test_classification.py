"""The classification benchmark end to end on a tiny schedule: every row, per-seed JSON,
PNG, the measured machine, reuse of finished runs."""
import json
import os

import pytest
import torch

from kd_det.benchmarks.classification import BENCH_METHODS, format_table, run_benchmark

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "classification")

pytestmark = pytest.mark.usefixtures("one_thread")


def test_benchmark_writes_every_row_and_reuses_runs(tmp_path, fashion_mnist):
    opts = ["CLS.DATA.VAL_SIZE", "128", "CLS.DATA.TRAIN_SIZE", "512",
            "CLS.DATA.TEST_SIZE", "200", "DATALOADER.BATCH_SIZE", "16",
            "SOLVER.WARMUP_ITERS", "0", "CLS.TEACHER.WIDTHS", "(8, 8, 8)",
            "CLS.MODEL.WIDTHS", "(4, 8, 8)"]
    out, js, png = str(tmp_path / "runs"), str(tmp_path / "r.json"), str(tmp_path / "r.png")
    report = run_benchmark(CONFIGS, out, js, png, seeds=[0, 1], iters=4, stage1_iters=2,
                           command="cmd", opts=opts)
    saved = json.load(open(js))
    assert saved["command"] == "cmd" and saved["complete"] and os.path.getsize(png) > 0
    assert saved["hardware"]["torch_threads"] == 1 and saved["hardware"]["cpu"]
    for name in BENCH_METHODS:
        assert saved[name]["seeds"] == [0, 1] and len(saved[name]["top1"]) == 2
        assert all(0.0 <= v <= 100.0 for v in saved[name]["top1"])
    assert "200 official test images" in saved["protocol"]["dataset"]
    assert format_table(report).count("\n") == len(BENCH_METHODS) + 1
    stamp = os.path.getmtime(os.path.join(out, "kd_seed1", "model_final.pth"))
    again = run_benchmark(CONFIGS, out, js, png, seeds=[0, 1], iters=4, stage1_iters=2,
                          command="cmd", opts=opts)
    assert os.path.getmtime(os.path.join(out, "kd_seed1", "model_final.pth")) == stamp
    assert again["KD"]["top1"] == report["KD"]["top1"]
    with pytest.raises(ValueError, match="--seeds"):
        run_benchmark(CONFIGS, out, js, png, seeds=[0], iters=4, stage1_iters=2, command="c")
    assert torch.get_num_threads() == 1
