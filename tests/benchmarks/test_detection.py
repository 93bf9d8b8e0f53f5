"""The detection protocol: its bookkeeping (time-to-accuracy, the kd_best settings diff,
stage fingerprints) and a whole tiny run."""
import glob
import json
import os

import pytest
import torch

from kd_det.benchmarks.detection import (
    _kd_overrides,
    breakdown_table,
    compare,
    detection_fingerprint,
    in_classes_of,
    load_cfg,
    read_curve,
    summarize,
    time_to_accuracy,
)
from kd_det.benchmarks.orchestrator import config_fingerprint

from ..detection_utils import make_coco_dataset, short_run, tiny_rcnn_cfg


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
    # A KD key added later stays out of the hash at its default (cached stages stay
    # valid), and is in it once set.
    without = kd.clone()
    del without.KD["TEACHERS"]
    del without.KD.STUDENT["INPUT_SCALE"]
    del without.KD.TEACHER["CLASS_MAP"]
    del without.KD.TEACHER["ALLOW_MISSING_CLASSES"]
    del without.KD.HINT["PAIR_BY"]
    del without.MODEL["EFFICIENTNET"]  # another backbone's keys, added later too
    assert detection_fingerprint(kd) == config_fingerprint(without)
    mapped = load_cfg("configs/BCCD/kd.yaml", ["KD.TEACHER.CLASS_MAP", "[2, 1, 0]"])
    assert detection_fingerprint(mapped) != detection_fingerprint(kd)
    two = load_cfg("configs/BCCD/kd.yaml", ["KD.TEACHERS", "[['a.yaml', 'a.pth'], ['b.yaml', "
                                                           "'b.pth']]"])
    assert detection_fingerprint(two) != detection_fingerprint(kd)
    half = load_cfg("configs/BCCD/kd.yaml", ["KD.STUDENT.INPUT_SCALE", 0.5])
    assert detection_fingerprint(half) != detection_fingerprint(kd)
    by_stride = load_cfg("configs/BCCD/kd.yaml", ["KD.HINT.PAIR_BY", "stride"])
    assert detection_fingerprint(by_stride) != detection_fingerprint(kd)


def test_read_curve_renames_the_evaluation_scalars(tmp_path):
    rows = [{"iter": 100, "seconds": 5.0, "bbox/AP": 30.0, "bbox/AP50": 60.0,
             "bbox/AP75": 25.0}]
    (tmp_path / "curve.json").write_text(json.dumps(rows))
    assert read_curve(str(tmp_path)) == [
        {"iter": 100, "seconds": 5.0, "AP": 30.0, "AP50": 60.0, "AP75": 25.0}]
    assert read_curve(str(tmp_path / "none")) == []


def test_summarize_keeps_coco_sizes_and_classes_only_when_every_seed_has_them():
    coco = [{"AP": a, "AP50": 2 * a, "AP75": a / 2, "APs": a / 4, "APm": a / 3, "APl": a,
             "AP-fish": a + 1, "AP-shark": a + 2, "train_seconds": 9.0} for a in (10.0, 20.0)]
    out = summarize(coco)
    assert out["AP"] == [10.0, 20.0] and out["AP_stats"]["mean"] == 15.0
    assert out["AP75"] == [5.0, 10.0]
    assert out["AP_per_size"] == {"APl": [10.0, 20.0], "APm": [10 / 3, 20 / 3],
                                  "APs": [2.5, 5.0]}
    assert out["AP_per_class"] == {"fish": [11.0, 21.0], "shark": [12.0, 22.0]}
    assert "AP50_per_class" not in out
    del coco[1]["AP-shark"], coco[1]["APs"]
    partial = summarize(coco)
    assert list(partial["AP_per_class"]) == ["fish"]
    assert sorted(partial["AP_per_size"]) == ["APl", "APm"]
    table = breakdown_table({"baseline": out, "voc": summarize([{"AP": 1.0, "AP50": 2.0}])},
                            "test")
    assert table.splitlines()[0] == "| test AP by size and class | APs | APm | APl | fish | shark |"
    assert table.splitlines()[2] == "| baseline | 3.8 | 5.0 | 15.0 | 16.0 | 17.0 |"
    assert len(table.splitlines()) == 3  # a row without sizes (VOC) is left out
    voc = summarize([{"AP": 1.0, "AP50": 2.0, "AP50-RBC": 3.0}])
    assert voc["AP50_per_class"] == {"RBC": [3.0]} and "AP75" not in voc
    # a resumed stage's train_seconds are its last part: the row says so
    assert "resumed_at_iter" not in voc
    resumed = summarize([{"AP": 1.0, "AP50": 2.0, "resumed_at_iter": 750},
                         {"AP": 1.0, "AP50": 2.0}])
    assert resumed["resumed_at_iter"] == [750, 0]


def _tiny_pair(tmp_path, prefix: str, eval_period: int = 0):
    """{role: yaml} of a tiny R-18 teacher / student / kd trio, 2 iterations a run, on
    `<prefix>_train` -> `<prefix>_val` datasets made here."""
    make_coco_dataset(str(tmp_path / "train"), f"{prefix}_train", n_images=4, seed=0)
    make_coco_dataset(str(tmp_path / "val"), f"{prefix}_val", n_images=2, seed=1)
    configs = {}
    for role, cfg in (("teacher", tiny_rcnn_cfg(fpn_channels=64, fc_dim=96)),
                      ("student", tiny_rcnn_cfg()), ("kd", tiny_rcnn_cfg())):
        cfg = short_run(cfg, [f"{prefix}_train"], [f"{prefix}_val"], iters=2)
        cfg.TEST.EVAL_PERIOD = eval_period
        if role == "kd":
            cfg.MODEL.META_ARCHITECTURE = "DistillRCNN"
            cfg.KD.TEACHER.EVAL_BEFORE_TRAIN = False
        configs[role] = str(tmp_path / f"{role}.yaml")
        (tmp_path / f"{role}.yaml").write_text(cfg.dump())
    return configs


def test_compare_runs_every_stage_once_and_reports_each_row(tmp_path, one_thread):
    """The whole protocol on tiny R-18 detectors, 2 iterations a stage: teacher, selection
    and test stages, the summaries, and a second call that trains nothing."""
    configs = _tiny_pair(tmp_path, "kd_cmp", eval_period=1)
    out = str(tmp_path / "runs")

    def run():
        return compare(configs, out, seeds=[0], test_split=("kd_cmp_train", "kd_cmp_val"),
                       val_split=("kd_cmp_train", "kd_cmp_val"), timing_images=2)

    res = run()
    for row in ("teacher", "baseline", "kd"):  # AP is NaN for models this untrained
        assert len(res[row]["AP50"]) == len(res[row]["AP"]) == 1, row
        assert res["validation"][row]["AP"] and res["curves"][row], row
    assert [p["iter"] for p in res["curves"]["kd"]] == [1, 2]
    assert res["speed"]["teacher_s_per_img"] > 0 and res["flops"]["backbone_ratio"] > 1
    stamps = {p: os.path.getmtime(p) for p in glob.glob(f"{out}/*/*/stage.json")}
    assert len(stamps) == 4  # val and test stages of the baseline and kd rows
    again = run()
    assert {p: os.path.getmtime(p) for p in stamps} == stamps
    assert again["kd"]["train_seconds"] == res["kd"]["train_seconds"]

    # One row rerun, the other and its validation curve from the earlier results; a
    # distilled row only if those had the same teacher (the baseline never sees it).
    def only(row, previous):
        return compare(configs, out, seeds=[0], test_split=("kd_cmp_train", "kd_cmp_val"),
                       val_split=("kd_cmp_train", "kd_cmp_val"), timing_images=2,
                       run_rows=[row], previous=previous)

    prev = json.loads(json.dumps(res))
    prev["baseline"]["AP50"] = [12.5]
    prev["curves"]["baseline"] = [{"iter": 2, "seconds": 1.0, "AP": 1.0, "AP50": 12.5}]
    prev["teacher"]["AP"] = [123.0]  # another teacher
    merged = only("kd", prev)
    assert merged["baseline"]["AP50"] == [12.5] and merged["protocol"]["carried_over"] == [
        "baseline"]
    assert merged["curves"]["baseline"] == prev["curves"]["baseline"]
    assert merged["ablation"] == prev["ablation"] and "carried over" in merged["protocol"][
        "ablation"]
    assert "ablation" not in res["protocol"]  # the search ran
    assert merged["kd"]["train_seconds"] == res["kd"]["train_seconds"]
    with pytest.raises(ValueError, match="teacher's test AP"):
        only("baseline", prev)
    with pytest.raises(ValueError, match="carry them"):
        only("kd", None)

    # A stage filter trains only its stages (the test baseline again: a new seed), and
    # refuses a choice whose stages read one it leaves out.
    def filtered(pattern):
        return compare(configs, out, seeds=[0, 1], test_split=("kd_cmp_train", "kd_cmp_val"),
                       timing_images=2, stage_filter=pattern)

    assert filtered("test/baseline") == {"stages": ["test/baseline_s0", "test/baseline_s1"]}
    assert os.path.isfile(f"{out}/test/baseline_s1/stage.json")
    assert not os.path.exists(f"{out}/test/kd_s1")
    assert {p: os.path.getmtime(p) for p in stamps} == stamps
    with pytest.raises(ValueError, match=r"read \['teacher'\]"):
        filtered("kd")


def test_compare_a_student_of_a_class_subset_and_shared_baselines(tmp_path, one_thread):
    """A 3-class teacher distils a student of 2 of its classes (a class subset, mapped by
    name): the teacher is scored on the subset through the map, the KD stages run with the
    teacher's evaluation before training on, and a second pair of the same student reuses
    the baselines in `baseline_dir`."""
    from kd_det.data import register_class_subset

    configs = _tiny_pair(tmp_path, "kd_sub")
    for split in ("train", "val"):
        register_class_subset(f"kd_sub2_{split}", f"kd_sub_{split}", ["c2", "c0"])
    # every detection kept, so that the untrained models' AP has its per-class part
    keep = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0]
    k = keep + ["MODEL.ROI_HEADS.NUM_CLASSES", 2]
    shared = {"baseline_dir": str(tmp_path / "baselines"),
              "teacher_dir": str(tmp_path / "teacher")}

    def run(out):
        return compare(configs, str(tmp_path / out), seeds=[0], timing_images=2,
                       val_split=("kd_sub2_train", "kd_sub2_val"),
                       test_split=("kd_sub2_train", "kd_sub2_val"),
                       opts={"teacher": keep, "student": k,
                             "kd": k + ["KD.TEACHER.EVAL_BEFORE_TRAIN", True]},
                       **shared)

    teacher = torch.nn.Identity()
    assert in_classes_of(teacher, load_cfg(configs["teacher"]), "kd_sub_val") is teacher
    mapped = in_classes_of(teacher, load_cfg(configs["teacher"]), "kd_sub2_val")
    assert mapped.detector is teacher and mapped._to_student.tolist() == [1, -1, 0]
    res = run("a")
    for row in ("teacher", "baseline", "kd"):
        assert set(res[row]["AP_per_class"]) == {"c2", "c0"}, row
        assert set(res["validation"][row]["AP_per_class"]) == {"c2", "c0"}, row
    # the teacher's own learning curve is on its 3-class set: not beside the students'
    assert "teacher" not in res["curves"] and "teacher_own_val" in res["curves"]
    stamps = {p: os.path.getmtime(p)
              for p in glob.glob(f"{shared['baseline_dir']}/*/baseline_s0/stage.json")}
    assert len(stamps) == 2 and not glob.glob(f"{tmp_path}/a/*/baseline_s0")
    run("b")
    assert {p: os.path.getmtime(p) for p in stamps} == stamps  # not trained again
    assert os.path.isfile(f"{tmp_path}/b/test/kd_s0/stage.json")


def test_compare_teachers_reuses_the_single_teacher_runs(tmp_path, one_thread):
    """Two tiny teachers against the better one: compare()'s stages are reused, the second
    teacher and the two-teacher students are new, and each row has one value per seed."""
    from kd_det.benchmarks.detection import compare_teachers

    configs = _tiny_pair(tmp_path, "kd_ct")
    single, multi = str(tmp_path / "single"), str(tmp_path / "multi")
    compare(configs, single, seeds=[0], test_split=("kd_ct_train", "kd_ct_val"),
            timing_images=2)
    before = {p: os.path.getmtime(p) for p in glob.glob(f"{single}/*/*/stage.json")}
    res = compare_teachers(configs, multi, single, [0], ("kd_ct_train", "kd_ct_val"))
    assert {p: os.path.getmtime(p) for p in before} == before  # nothing retrained
    assert os.path.isfile(f"{multi}/teacher_s1/stage.json")
    assert os.path.isfile(f"{multi}/test/kd_two_teachers_s0/stage.json")
    assert res["single_teacher"] in ("teacher", "teacher_1")
    for row in ("teacher", "baseline", "kd_single", "kd_two_teachers"):
        assert len(res[row]["AP"]) == 1, row
    # The single-teacher rows carried over from compare()'s results: nothing new trains.
    prev = compare(configs, single, seeds=[0], test_split=("kd_ct_train", "kd_ct_val"),
                   timing_images=2)
    prev["baseline"]["AP50"] = [12.5]
    again = compare_teachers(configs, multi, single, [0], ("kd_ct_train", "kd_ct_val"),
                             previous=prev)
    assert again["baseline"]["AP50"] == [12.5] and "baseline" in again["protocol"]["carried_over"]
    assert again["kd_two_teachers"]["train_seconds"] == res["kd_two_teachers"]["train_seconds"]
    cfg = load_cfg(f"{multi}/test/kd_two_teachers_s0/config.yaml")
    assert [w for _, w in cfg.KD.TEACHERS] == [f"{single}/teacher/model_final.pth",
                                               f"{multi}/teacher_s1/model_final.pth"]
    assert not cfg.KD.TEACHER.WEIGHTS


def test_pair_check_reads_the_selection_runs_against_the_bar():
    """Teacher 30 / baseline 22 val AP (8 apart), 4x faster, 3.5x fewer FLOPs: passed,
    with the gap per size; a gap of 4 AP is not."""
    from kd_det.benchmarks.detection import format_table, pair_check

    def row(ap, ap50, aps):
        return summarize([{"AP": a, "AP50": a50, "APs": s, "APm": a, "APl": a}
                          for a, a50, s in zip(ap, ap50, aps)])

    res = {"validation": {"teacher": row([30.0], [60.0], [15.0]),
                          "baseline": row([21.0, 23.0], [50.0, 52.0], [5.0, 7.0])},
           "speed": {"student_speedup": 4.0, "teacher_s_per_img": 0.4,
                     "student_s_per_img": 0.1, "torch_threads": 1},
           "flops": {"backbone_ratio": 3.5, "teacher_backbone_gflops": 7.0,
                     "student_backbone_gflops": 2.0}}
    pc = pair_check(res)
    assert pc["val_AP_gap"] == 8.0 and pc["val_AP50_gap"] == 9.0 and pc["passed"]
    assert pc["val_AP_gap_per_size"] == {"APl": 8.0, "APm": 8.0, "APs": 9.0}
    res["pair_check"] = pc
    assert "teacher - baseline 8.0 AP (bar 5), 9.0 AP50; by size APl +8.0, APm +8.0, " \
           "APs +9.0; speed-up 4.0x, FLOPs 3.5x (bars 3x, 3x): passed." in format_table(res)
    res["validation"]["teacher"] = row([26.0], [60.0], [15.0])
    assert pair_check(res)["passes"] == {"speedup": True, "flops_ratio": True,
                                         "val_AP_gap": False}
