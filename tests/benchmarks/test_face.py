"""The face benchmark end to end on the synthetic Olivetti file: teachers once, students
per seed, the pipelines' wall-clock, CPU time per face, tables and PNG."""
import json
import os

import pytest

from kd_det.benchmarks.face import RUNS, format_tables, run_benchmark

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "face")

pytestmark = pytest.mark.usefixtures("one_thread")


def test_benchmark_writes_json_with_command_and_tables(olivetti_mat, tmp_path):
    opts = ["FACE.DATA.PATH", olivetti_mat, "FACE.NUM_IDENTITIES", "4", "FACE.MODEL.WIDTHS",
            "(4, 8)", "FACE.TEACHER.WIDTHS", "(4, 8)", "FACE.EMBED_DIM", "8",
            "DATALOADER.BATCH_SIZE", "8", "SOLVER.WARMUP_ITERS", "0"]
    json_path, png = str(tmp_path / "r.json"), str(tmp_path / "r.png")
    report = run_benchmark(CONFIGS, str(tmp_path / "runs"), json_path, png, seeds=[0, 1],
                           iters=2, command="python tools/bench_face_kd.py", opts=opts)
    saved = json.load(open(json_path))
    assert saved["command"] == "python tools/bench_face_kd.py" and saved["complete"]
    assert saved["hardware"]["cpu"] and os.path.isfile(png)
    assert list(saved["rows"]) == list(RUNS)
    assert saved["rows"]["kd_mmd"]["seeds"] == [0, 1]
    assert len(saved["rows"]["teacher"]["rank1"]["8px"]) == 1
    wall = saved["pipelines_wall_s"]["retrained_teacher"]
    assert wall["teacher_training"] == saved["rows"]["teacher_lr"]["wall_s"][0] > 0
    assert saved["speed"]["student"]["params"] < saved["speed"]["teacher"]["params"]
    assert "(c) KD, MK-MMD (paper)" in format_tables(report) == saved["table_markdown"]
