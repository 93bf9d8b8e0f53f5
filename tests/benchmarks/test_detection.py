"""The detection protocol's bookkeeping: time-to-accuracy, KD diagnostics read back from
metrics.json, the kd_best settings diff, and stage fingerprints."""
import json

import pytest

from kd_det.benchmarks.detection import (
    _kd_overrides,
    detection_fingerprint,
    load_cfg,
    read_curve,
    read_diagnostics,
    time_to_accuracy,
)


def _curve(points):
    return [{"iter": i, "seconds": s, "AP": a / 2, "AP50": a} for i, s, a in points]


def test_time_to_accuracy_is_a_fraction_of_the_baseline_wall_clock():
    base = _curve([(100, 10.0, 50.0), (200, 20.0, 60.0), (300, 30.0, 70.0)])
    fast = _curve([(100, 15.0, 65.0), (200, 30.0, 72.0), (300, 45.0, 73.0)])
    assert time_to_accuracy(fast, base) == 1.0  # reaches 70 at 30 s: the baseline's 30 s
    early = _curve([(100, 12.0, 71.0)])
    assert time_to_accuracy(early, base) == 0.4
    assert time_to_accuracy(_curve([(100, 5.0, 10.0)]), base) is None
    assert time_to_accuracy([], base) is None


def test_read_diagnostics_averages_each_logged_scalar(tmp_path):
    rows = [{"iteration": 19, "total_loss": 1.0},
            {"iteration": 50, "kd_diag/grad_ratio/loss_hint": 0.2},
            {"iteration": 100, "kd_diag/grad_ratio/loss_hint": 0.4,
             "kd_diag/roi_bound_active_frac": 0.5}]
    (tmp_path / "metrics.json").write_text("\n".join(json.dumps(r) for r in rows))
    diag = read_diagnostics(str(tmp_path))
    g = diag["grad_ratio/loss_hint"]
    assert g["mean"] == pytest.approx(0.3) and (g["first"], g["last"], g["n"]) == (0.2, 0.4, 2)
    assert diag["roi_bound_active_frac"]["n"] == 1


def test_kd_best_settings_are_the_kd_keys_that_differ():
    kd = load_cfg("configs/BCCD/kd.yaml")
    best = load_cfg("configs/BCCD/kd.yaml", ["KD.STUDENT.INIT_FROM_TEACHER", True,
                                              "KD.HINT.LOSS", "pkd", "SOLVER.BASE_LR", 0.01])
    assert _kd_overrides(kd, best) == {"KD.STUDENT.INIT_FROM_TEACHER": True,
                                       "KD.HINT.LOSS": "pkd"}


def test_plain_detector_fingerprints_ignore_kd_keys():
    student = load_cfg("configs/BCCD/student.yaml")
    other = load_cfg("configs/BCCD/student.yaml", ["KD.HINT.WEIGHT", 3.0])
    assert detection_fingerprint(student) == detection_fingerprint(other)
    kd = load_cfg("configs/BCCD/kd.yaml")
    assert detection_fingerprint(kd) != detection_fingerprint(load_cfg("configs/BCCD/kd.yaml",
                                                     ["KD.HINT.WEIGHT", 3.0]))


def test_read_curve_renames_the_evaluation_scalars(tmp_path):
    rows = [{"iter": 100, "seconds": 5.0, "bbox/AP": 30.0, "bbox/AP50": 60.0,
             "bbox/AP75": 25.0}]
    (tmp_path / "curve.json").write_text(json.dumps(rows))
    assert read_curve(str(tmp_path)) == [
        {"iter": 100, "seconds": 5.0, "AP": 30.0, "AP50": 60.0, "AP75": 25.0}]
    assert read_curve(str(tmp_path / "none")) == []
