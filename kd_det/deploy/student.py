"""The eager detector an export starts from: the student of a DistillRCNN checkpoint, or a
plain GeneralizedRCNN (a student export, a teacher) from its config and weights."""
from typing import Tuple

import torch
from detectron2.config import CfgNode

from ..checkpoint import safe_torch_load
from ..engine.export import _build_yacs_student, _check_matches, student_config, student_state_dict

__all__ = ["deployable_model"]


def _refuse_untraceable(cfg: CfgNode, config_name: str) -> None:
    """The export returns boxes, scores and classes: a meta-architecture other than
    GeneralizedRCNN, or a mask or keypoint head, has outputs it would silently drop."""
    if cfg.MODEL.META_ARCHITECTURE != "GeneralizedRCNN":
        raise ValueError(f"{config_name}: MODEL.META_ARCHITECTURE={cfg.MODEL.META_ARCHITECTURE!r}"
                         " cannot be exported; kd_det exports GeneralizedRCNN box detectors "
                         "(and DistillRCNN students).")
    for key in ("MASK_ON", "KEYPOINT_ON"):
        if cfg.MODEL[key]:
            raise ValueError(f"{config_name}: MODEL.{key} is True; the exported model returns "
                             "boxes, scores and classes only, so a mask or keypoint head is not "
                             f"traced. Export a box-only model (MODEL.{key} False).")


def deployable_model(cfg: CfgNode, weights: str,
                     config_name: str = "the config") -> Tuple[torch.nn.Module, CfgNode]:
    """(eval-mode GeneralizedRCNN with `weights`, its own config). A DistillRCNN config
    gives its student at the student's resolution (engine.export.student_config), with a
    DistillRCNN checkpoint or the student's own weights; the weights must fit the model
    exactly, as for the checkpoint export."""
    ckpt = safe_torch_load(weights)
    state = ckpt.get("model", ckpt)
    if cfg.MODEL.META_ARCHITECTURE == "DistillRCNN":
        cfg = student_config(cfg, weights)
        if any(k.startswith("student.") for k in state):  # else already the student's alone
            state = student_state_dict(state)
    _refuse_untraceable(cfg, config_name)
    model = _build_yacs_student(cfg)
    _check_matches(model, state, weights)
    model.load_state_dict(state)
    return model.eval(), cfg
