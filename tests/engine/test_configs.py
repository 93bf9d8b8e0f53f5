"""Every shipped detection config parses; KD configs resolve their teacher config."""
import glob
import os

import pytest

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
        assert tcfg.MODEL.ROI_HEADS.NUM_CLASSES == cfg.MODEL.ROI_HEADS.NUM_CLASSES
