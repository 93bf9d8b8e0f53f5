"""The SR benchmark end to end on tiny images: bicubic, teacher, baseline and student rows
from the config folder the caller gives, runs listed with their settings."""
import json
import os

import pytest

from kd_det.benchmarks.sr import ROWS, markdown_table, run_benchmark

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "sr")

pytestmark = pytest.mark.usefixtures("one_thread")


def test_benchmark_writes_every_row_of_the_table(sr_images, tmp_path):
    opts = ["SR.DATA.TRAIN_DIR", sr_images, "SR.DATA.TEST_DIRS", f"('{sr_images}',)",
            "SR.DATA.TEST_NAMES", "('tiny',)", "SR.DATA.PATCHES_PER_IMAGE", 2,
            "SR.TEACHER.ENCODER_WIDTH", 8]
    json_path, png = str(tmp_path / "r.json"), str(tmp_path / "r.png")
    report = run_benchmark(CONFIGS, str(tmp_path / "runs"), json_path, png, seeds=[0, 1],
                           iters=2, command="cmd", scales=[2], lr_patch=8, batch_size=2,
                           opts=opts, jobs=1)
    saved = json.load(open(json_path))
    assert saved == json.loads(json.dumps(report)) and saved["complete"]
    assert os.path.getsize(png) > 0 and saved["hardware"]["cpu"]
    x2 = saved["results"]["x2"]
    assert set(x2) == set(ROWS)
    assert x2["student"]["tiny"]["psnr"]["seeds"] == [0, 1]
    assert x2["bicubic"]["tiny"]["psnr"] > 0
    assert [(r["mode"], r["seed"]) for r in saved["runs"]] == [
        ("baseline", 0), ("baseline", 1), ("student", 0), ("student", 1), ("teacher", 0)]
    assert markdown_table(saved["results"], [2], ["tiny"]) == saved["table_markdown"]
