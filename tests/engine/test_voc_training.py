"""A VOC-layout run on a small BCCD subset trains a DistillRCNN and evaluates it with
Detectron2's PASCAL VOC evaluator (skipped when ../shared/data is absent)."""
import os

import pytest

from kd_det.data import BCCD_CLASSES, register_voc_layout
from kd_det.engine import KDTrainer, build_evaluator

from ..detection_utils import short_run, write_teacher


@pytest.fixture
def bccd_subset(shared_data, tmp_path):
    src = os.path.join(shared_data, "BCCD")
    if not os.path.isdir(src):
        pytest.skip(f"BCCD is absent from {shared_data}")
    root = tmp_path / "BCCD_mini"
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for sub in ("JPEGImages", "Annotations"):
        os.symlink(os.path.join(src, sub), root / sub)
    ids = open(os.path.join(src, "ImageSets", "Main", "train.txt")).read().split()
    (root / "ImageSets" / "Main" / "mini.txt").write_text("\n".join(ids[:4]) + "\n")
    register_voc_layout("bccd_mini_test", str(root), "mini", BCCD_CLASSES)
    return "bccd_mini_test"


def test_bccd_subset_trains_and_uses_the_voc_evaluator(bccd_subset, tmp_path):
    from detectron2.evaluation import PascalVOCDetectionEvaluator

    from ..detection_utils import tiny_rcnn_cfg

    cfg = tiny_rcnn_cfg()
    cfg.MODEL.META_ARCHITECTURE = "DistillRCNN"
    cfg.KD.TEACHER.CONFIG_FILE, cfg.KD.TEACHER.WEIGHTS = write_teacher(str(tmp_path))
    cfg.KD.TEACHER.EVAL_BEFORE_TRAIN = False
    short_run(cfg, [bccd_subset], [bccd_subset], size=128, max_size=171, iters=2)
    cfg.SOLVER.BASE_LR = 0.001
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    assert isinstance(build_evaluator(cfg, bccd_subset), PascalVOCDetectionEvaluator)
    trainer = KDTrainer(cfg)
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    assert {"AP", "AP50", "AP75", "AP50-RBC", "AP50-WBC", "AP50-Platelets"} <= set(results["bbox"])
    assert 0.0 <= results["bbox"]["AP50"] <= 100.0
