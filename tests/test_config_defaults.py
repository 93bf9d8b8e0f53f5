"""One place for each default: the KD terms' dataclass defaults are what the yacs defaults
build, the shipped base config and the benchmark fingerprint restate none differently, and
docs/keys.md is what tools/keys_doc.py prints."""
import inspect
import os
import sys

from detectron2.config import get_cfg

from kd_det import add_kd_config
from kd_det.benchmarks.detection import _LATER_KD_DEFAULTS
from kd_det.modeling import DistillRCNN
from kd_det.modeling.kd_terms import KD_TERM_REGISTRY, build_kd_terms

from .detection_utils import ROOT, load_yaml_cfg

sys.path.insert(0, os.path.join(ROOT, "tools"))
import keys_doc  # noqa: E402


def test_yacs_defaults_build_the_dataclass_defaults():
    cfg = get_cfg()
    add_kd_config(cfg)
    assert build_kd_terms(cfg) == [term() for _, term in KD_TERM_REGISTRY]


def test_the_base_config_sets_only_what_differs():
    base = load_yaml_cfg("configs/Base-KD-RCNN-FPN.yaml")
    plain = load_yaml_cfg("configs/Base-RCNN-FPN.yaml")
    assert base.KD == plain.KD
    assert base.MODEL.META_ARCHITECTURE == "DistillRCNN"


def test_the_fingerprint_leaves_out_keys_at_their_real_defaults():
    """detection_fingerprint drops these keys when at their default: the same default."""
    cfg = get_cfg()
    add_kd_config(cfg)
    for key, default in _LATER_KD_DEFAULTS.items():
        node = cfg.KD
        for part in key.split("."):
            node = node[part]
        assert node == default, key


def test_keys_doc_is_generated_and_names_real_lazyconfig_arguments():
    with open(os.path.join(ROOT, "docs", "keys.md")) as f:
        assert f.read() == keys_doc.keys_markdown(), "run: python tools/keys_doc.py > docs/keys.md"
    params = inspect.signature(DistillRCNN.__init__).parameters
    for arg in keys_doc.MODEL_ARGUMENTS.values():
        assert arg.split(".")[0] in params, arg
    cfg = get_cfg()
    add_kd_config(cfg)
    for key in keys_doc.MODEL_ARGUMENTS:
        node = cfg
        for part in key.split("."):
            node = node[part]  # the key exists
