"""The face benchmark end to end on the synthetic Olivetti file: teachers once, the
validation search over every seed, the chosen rows on test, curves, diagnostics, the
plateau check, tables and PNG; and tools/bench_face_kd.py --quick."""
import json
import os
import subprocess
import sys

import pytest

from kd_det.benchmarks import face

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "face")
ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
TINY = ["FACE.DATA.PATH", None, "FACE.NUM_IDENTITIES", "4", "FACE.MODEL.WIDTHS", "(4, 8)",
        "FACE.TEACHER.WIDTHS", "(4, 8)", "FACE.EMBED_DIM", "8", "DATALOADER.BATCH_SIZE", "8",
        "SOLVER.WARMUP_ITERS", "0", "SOLVER.LOG_PERIOD", "1", "FACE.TEST.VAL_PERIOD", "2",
        "FACE.KD.DIAGNOSTICS_PERIOD", "1"]

pytestmark = pytest.mark.usefixtures("one_thread")


def test_benchmark_searches_on_val_and_reports_the_chosen_rows(olivetti_mat, tmp_path,
                                                                monkeypatch):
    search = {row: {"default": {"SOFT_WEIGHT": 1.0, "FEAT_WEIGHT": 1.0, "TEMPERATURE": 4.0},
                    "feat0.1": {"SOFT_WEIGHT": 1.0, "FEAT_WEIGHT": 0.1, "TEMPERATURE": 4.0}}
              for row in ("kd_mmd", "kd_l2")}
    monkeypatch.setattr(face, "SEARCH", search)
    opts = [olivetti_mat if v is None else v for v in TINY]
    json_path, png = str(tmp_path / "r.json"), str(tmp_path / "r.png")
    report = face.run_benchmark(CONFIGS, str(tmp_path / "runs"), json_path, png,
                                seeds=[0, 1], iters=4, command="python tools/bench_face_kd.py",
                                opts=opts)
    saved = json.load(open(json_path))
    assert saved["command"] == "python tools/bench_face_kd.py" and saved["complete"]
    assert os.path.isfile(png) and list(saved["rows"]) == list(face.ROWS)
    for row in ("kd_mmd", "kd_l2"):
        cands = saved["search"][row]["candidates"]
        scores = {k: c["val_score"] for k, c in cands.items()}
        assert all(len(c["val_score_per_seed"]) == 2 for c in cands.values())
        chosen = saved["search"][row]["chosen"]
        assert scores[chosen] == max(scores.values())
        # the row is the chosen candidate's runs: its validation score is the search's
        assert saved["rows"][row]["setting"]["candidate"] == chosen
        assert saved["rows"][row]["val_score"] == cands[chosen]["val_score_per_seed"]
        assert saved["rows"][row]["seeds"] == [0, 1]
        diag = saved["diagnostics"][row]
        assert {"grad_ratio/kd", "teacher_acc/student_input"} <= set(diag)
    assert len(saved["rows"]["teacher"]["rank1"]["8px"]) == 1
    assert set(saved["diagnostics"]["teacher_rank1"]["teacher"]) == {"val", "test"}
    # validation curves at 2 and 4 iterations, the plateau check at 2, 4, 6, 8
    assert saved["curves"]["student"]["iter"] == [2, 4]
    assert saved["curves"]["student_x2"]["iter"] == [2, 4, 6, 8]
    assert set(saved["plateau_check"]["val_score"]) == {"4 iterations", "8 iterations"}
    wall = saved["pipelines_wall_s"]["retrained_teacher"]
    assert wall["teacher_training"] == saved["rows"]["teacher_lr"]["wall_s"][0] > 0
    assert saved["speed"]["student"]["params"] < saved["speed"]["teacher"]["params"]
    tables = face.format_tables(report)
    assert tables == saved["table_markdown"] and "(c) KD, MK-MMD (paper)" in tables
    assert "(c) KD MK-MMD feat0.1" in tables


def test_quick_smoke_run_of_the_tool(olivetti_mat, tmp_path):
    out = tmp_path / "bench"
    subprocess.run([sys.executable, "tools/bench_face_kd.py", "--quick", "--jobs", "1",
                    "--seeds", "0", "1", "--output-root", str(out),
                    "FACE.DATA.PATH", olivetti_mat, "FACE.NUM_IDENTITIES", "4"],
                   cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    saved = json.load(open(out.parent / "bench_quick" / "face_lr_kd.json"))
    assert saved["complete"] and saved["rows"]["kd_mmd"]["seeds"] == [0, 1]
    assert saved["search"]["kd_mmd"]["chosen"] in face.SEARCH["kd_mmd"]
