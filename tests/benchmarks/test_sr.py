"""The SR benchmark end to end: the search decided on val, the winner's teacher and weights
for every seed of the student, FSRCNN over the same seeds, curves and diagnostics in the
JSON, finished runs reused; tools/bench_sr.py --quick on the real data."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from kd_det.benchmarks import sr
from kd_det.benchmarks.orchestrator import pick_best

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(ROOT, "configs", "sr")

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(run_dir):
    with open(os.path.join(run_dir, "config.yaml")) as f:
        return yaml.safe_load(f)


def test_benchmark_protocol_on_tiny_images(sr_images, tmp_path):
    opts = ["SR.DATA.TRAIN_DIR", sr_images, "SR.DATA.TEST_DIRS", f"('{sr_images}',)",
            "SR.DATA.TEST_NAMES", "('tiny',)", "SR.DATA.PATCHES_PER_IMAGE", 2,
            "SR.DATA.PATCH_SIZE", 18, "SR.DATA.VAL_EVERY", 2, "SR.VAL_PERIOD", 2,
            "SR.TEACHER.ENCODER_WIDTH", 8, "DATALOADER.BATCH_SIZE", 2]
    json_path, png = str(tmp_path / "r.json"), str(tmp_path / "r.png")
    runs = tmp_path / "runs"

    def run():
        return sr.run_benchmark(CONFIGS, str(runs), json_path, png, seeds=[0, 1], iters=3,
                                command="cmd", scale=3, opts=opts, jobs=1)

    report = run()
    saved = json.load(open(json_path))
    assert saved == json.loads(json.dumps(report)) and saved["complete"]
    assert os.path.getsize(png) > 0 and saved["hardware"]["cpu"]
    # the search: every candidate on val with the first seed, the winner pick_best's
    search = saved["search"]
    assert list(search["candidates"]) == list(sr.SEARCH)
    scores = {k: c["val_psnr"] for k, c in search["candidates"].items()}
    chosen = search["chosen"]
    assert chosen == pick_best(scores)
    imitation, vid = sr.SEARCH[chosen]
    # every seed of the student: the winner's weights and teacher; seed 0 is the search run
    student = saved["student"]
    assert student["seeds"] == [0, 1] and student["runs"][0] == f"student_{chosen}_seed0"
    assert student["val"]["psnr"]["per_seed"][0] == scores[chosen]
    teacher = saved["teacher"]["run"]
    assert teacher == f"teacher_imit{imitation:g}"
    assert _config(runs / teacher)["SR"]["TEACHER"]["IMITATION_WEIGHT"] == imitation
    for seed, name in zip(student["seeds"], student["runs"]):
        cfg = _config(runs / name)
        assert cfg["SEED"] == seed and cfg["SR"]["KD"]["VID_WEIGHT"] == vid
        assert cfg["SR"]["KD"]["TEACHER_WEIGHTS"] == str(runs / teacher / "model_final.pth")
        assert cfg["SOLVER"] == _config(runs / f"fsrcnn_seed{seed}")["SOLVER"]  # one schedule
    # test rows: per seed, mean, std; the paired differences are per seed
    assert saved["baseline"]["seeds"] == [0, 1]
    for row in ("baseline", "student"):
        psnr = saved[row]["tiny"]["psnr"]
        assert psnr["n"] == 2 and psnr["mean"] == pytest.approx(sum(psnr["per_seed"]) / 2)
    paired = saved["comparisons"]["student - baseline"]["tiny"]
    assert paired["per_seed"] == pytest.approx(
        [a - b for a, b in zip(student["tiny"]["psnr"]["per_seed"],
                               saved["baseline"]["tiny"]["psnr"]["per_seed"])])
    assert saved["bicubic"]["tiny"]["psnr"] > 0 and "psnr" in saved["bicubic"]["val"]
    # curves of every trained run: iteration 0, every VAL_PERIOD, the end
    assert set(saved["curves"]) == {s for s in os.listdir(runs) if s != "bicubic"}
    curve = saved["curves"][student["runs"][0]]
    assert [p["iter"] for p in curve] == [0, 2, 3]
    assert {"grad_norm/rec", "grad_norm/vid", "term/vid"} <= set(curve[0])
    diag = saved["diagnostics"]
    assert diag["student_val_psnr_at_iteration_0"][student["runs"][0]] == curve[0]["val/psnr"]
    assert diag["teacher_val_psnr"] == saved["teacher"]["val"]["psnr"]
    assert sr.markdown_table(saved, ["tiny"]) == saved["table_markdown"]
    # a second call reuses every finished run
    mtime = os.path.getmtime(runs / "fsrcnn_seed1" / "stage.json")
    again = run()
    assert again["student"] == report["student"]
    assert os.path.getmtime(runs / "fsrcnn_seed1" / "stage.json") == mtime


def test_at_least_two_seeds(tmp_path):
    with pytest.raises(ValueError, match="at least two"):
        sr.run_benchmark(CONFIGS, str(tmp_path), "r.json", "r.png", seeds=[0], iters=2,
                         command="cmd")


def test_quick_benchmark_on_the_real_data(shared_data, tmp_path):
    subprocess.run([sys.executable, "tools/bench_sr.py", "--quick", "--jobs", "1",
                    "--output-root", str(tmp_path / "runs")], cwd=ROOT, check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
    out = tmp_path / "runs_quick"
    saved = json.load(open(out / "sr_pisr.json"))
    assert saved["complete"] and "--quick" in saved["command"]
    assert os.path.getsize(out / "sr_pisr.png") > 0
    assert saved["bicubic"]["Set5"]["psnr"] == pytest.approx(30.40, abs=0.02)  # x3
    assert saved["student"]["seeds"] == saved["baseline"]["seeds"] == [0, 1, 2]
    assert saved["protocol"]["scale"] == 3
