"""Every shipped detection config parses; KD configs resolve their teacher config."""
import glob
import os

import pytest
from detectron2.data import DatasetCatalog

from kd_det.modeling.teacher import build_teacher_cfg

from ..detection_utils import load_yaml_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AUX = ("classification", "face", "sr")
CONFIGS = sorted(
    p for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True)
    if os.path.relpath(p, os.path.join(ROOT, "configs")).split(os.sep)[0] not in AUX
)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_config_parses_and_teacher_resolves(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_yaml_cfg(os.path.relpath(path, ROOT))
    if cfg.MODEL.META_ARCHITECTURE == "DistillRCNN" and cfg.KD.TEACHER.CONFIG_FILE:
        tcfg = build_teacher_cfg(cfg)
        # a teacher of other classes needs a class map, or names to map by (its own
        # training set's, registered: the model zoo's COCO)
        same = tcfg.MODEL.ROI_HEADS.NUM_CLASSES == cfg.MODEL.ROI_HEADS.NUM_CLASSES
        assert same or cfg.KD.TEACHER.CLASS_MAP or tcfg.DATASETS.TRAIN[0] in DatasetCatalog


@pytest.mark.parametrize("folder", ["BCCD_halfres", "BCCD_quarterres"])
def test_low_resolution_pair_is_consistent(folder, monkeypatch):
    """The baseline student of a low-resolution pair is what the distilled student exports
    as: same model, INPUT.* at KD.STUDENT.INPUT_SCALE of the teacher's."""
    from kd_det.engine.export import student_config

    monkeypatch.chdir(ROOT)
    kd = load_yaml_cfg(f"configs/{folder}/kd.yaml")
    baseline = load_yaml_cfg(f"configs/{folder}/student.yaml")
    teacher = load_yaml_cfg(f"configs/{folder}/teacher.yaml")
    assert kd.KD.STUDENT.INPUT_SCALE < 1
    assert kd.INPUT.MIN_SIZE_TEST == teacher.INPUT.MIN_SIZE_TEST
    exported = student_config(kd)
    for key in ("MIN_SIZE_TRAIN", "MAX_SIZE_TRAIN", "MIN_SIZE_TEST", "MAX_SIZE_TEST"):
        assert exported.INPUT[key] == baseline.INPUT[key], key
    exported.OUTPUT_DIR = baseline.OUTPUT_DIR
    del baseline.MODEL["EFFICIENTNET"]  # an export keeps its own backbone's keys only
    for node in ("MODEL", "SOLVER"):
        assert exported[node] == baseline[node], node
