"""Building the frozen detection teacher and checking that it can teach this student."""
import logging
import os

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.modeling import build_model

from ..checkpoint import SafeDetectionCheckpointer
from .backbone import add_mobilenet_config, skip_imagenet_init
from .frozen import load_strict

__all__ = ["build_teacher_cfg", "build_teacher", "rpn_alignment_problem"]

logger = logging.getLogger(__name__)


def _resolve_config_file(name: str) -> str:
    if os.path.isfile(name):
        return name
    from detectron2 import model_zoo

    try:
        path = model_zoo.get_config_file(name)
    except RuntimeError:
        path = ""
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(
            f"KD.TEACHER.CONFIG_FILE={name!r} is neither a file nor a Detectron2 model-zoo "
            "config name (e.g. 'COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml')."
        )
    return path


def build_teacher_cfg(cfg: CfgNode) -> CfgNode:
    """The teacher's own config: its YAML + KD.TEACHER.OPTS, on the student's device. The
    YAML may hold kd_det's keys (a teacher trained with tools/train_net.py, a MobileNetV2
    backbone)."""
    from ..config import add_kd_config

    path = _resolve_config_file(cfg.KD.TEACHER.CONFIG_FILE)
    tcfg = get_cfg()
    add_kd_config(tcfg)
    add_mobilenet_config(tcfg)
    try:
        tcfg.merge_from_file(path, allow_unsafe=cfg.KD.TEACHER.ALLOW_UNSAFE_YAML)
    except Exception as e:
        hint = ("" if cfg.KD.TEACHER.ALLOW_UNSAFE_YAML else " It is read as safe YAML: a "
                "!!python tag could run code. If you trust the file and need its tags, set "
                "KD.TEACHER.ALLOW_UNSAFE_YAML True.")
        raise ValueError(f"KD.TEACHER.CONFIG_FILE={path!r} could not be read: {e}.{hint}") from e
    tcfg.merge_from_list(list(cfg.KD.TEACHER.OPTS))
    if tcfg.MODEL.META_ARCHITECTURE == "DistillRCNN":
        raise ValueError(
            f"KD.TEACHER.CONFIG_FILE={path!r} describes a DistillRCNN; give the config the "
            "teacher was trained with (e.g. GeneralizedRCNN), or export a student first."
        )
    tcfg.MODEL.DEVICE = cfg.MODEL.DEVICE
    tcfg.MODEL.WEIGHTS = cfg.KD.TEACHER.WEIGHTS
    skip_imagenet_init(tcfg)  # KD.TEACHER.WEIGHTS replace them
    if tcfg.MODEL.ROI_HEADS.NUM_CLASSES != cfg.MODEL.ROI_HEADS.NUM_CLASSES:
        raise ValueError(
            f"KD.TEACHER.CONFIG_FILE: the teacher has MODEL.ROI_HEADS.NUM_CLASSES="
            f"{tcfg.MODEL.ROI_HEADS.NUM_CLASSES} but the student has "
            f"{cfg.MODEL.ROI_HEADS.NUM_CLASSES}; distillation needs the same class list "
            "(set the student's MODEL.ROI_HEADS.NUM_CLASSES or use a matching teacher)."
        )
    tcfg.freeze()
    return tcfg


def build_teacher(tcfg: CfgNode) -> torch.nn.Module:
    """Build the teacher and load KD.TEACHER.WEIGHTS strictly."""
    teacher = build_model(tcfg)
    load_strict(teacher, tcfg.MODEL.WEIGHTS, "KD.TEACHER.WEIGHTS",
                checkpointer_cls=SafeDetectionCheckpointer)
    logger.info("Loaded teacher weights from %s", tcfg.MODEL.WEIGHTS)
    return teacher


def rpn_alignment_problem(student_rpn, teacher_rpn, student_shapes, teacher_shapes) -> str:
    """Why the two RPNs cannot be compared anchor by anchor ('' when they can)."""
    s_ag, t_ag = student_rpn.anchor_generator, teacher_rpn.anchor_generator
    if len(student_rpn.in_features) != len(teacher_rpn.in_features):
        return (f"RPN levels differ: student {student_rpn.in_features}, "
                f"teacher {teacher_rpn.in_features}")
    s_str = [student_shapes[f].stride for f in student_rpn.in_features]
    t_str = [teacher_shapes[f].stride for f in teacher_rpn.in_features]
    if s_str != t_str:
        return f"RPN feature strides differ: student {s_str}, teacher {t_str}"
    if list(s_ag.strides) != list(t_ag.strides) or s_ag.offset != t_ag.offset:
        return "anchor generator strides or offsets differ (MODEL.ANCHOR_GENERATOR.*)"
    s_cells, t_cells = list(s_ag.cell_anchors), list(t_ag.cell_anchors)
    if len(s_cells) != len(t_cells) or any(
        a.shape != b.shape or not torch.allclose(a.cpu(), b.cpu())
        for a, b in zip(s_cells, t_cells)
    ):
        return "anchor sizes or aspect ratios differ (MODEL.ANCHOR_GENERATOR.SIZES/ASPECT_RATIOS)"
    if s_ag.box_dim != t_ag.box_dim:
        return "anchor box dimensions differ"
    return ""
