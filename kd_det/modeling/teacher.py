"""Building the frozen detection teacher and checking that it can teach this student."""
import logging
import os
from typing import List, Sequence, Tuple

import torch
from detectron2.config import CfgNode, LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_model

from ..checkpoint import SafeDetectionCheckpointer
from ..config import add_kd_config
from .backbone import add_efficientnet_config, add_mobilenet_config, skip_imagenet_init
from .frozen import DistillerBase, load_strict

__all__ = ["build_teacher_cfg", "build_teacher_cfgs", "build_teacher", "load_teacher",
           "teacher_specs"]

logger = logging.getLogger(__name__)


def _resolve_config_file(name: str, key: str = "KD.TEACHER.CONFIG_FILE") -> str:
    if os.path.isfile(name):
        return name
    from detectron2 import model_zoo

    try:
        path = model_zoo.get_config_file(name)
    except RuntimeError:
        path = ""
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(
            f"{key}={name!r} is neither a file nor a Detectron2 model-zoo config name (e.g. "
            "'COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml')."
        )
    return path


def _read_yacs_teacher(path: str, opts, allow_unsafe: bool, key: str,
                       unsafe_opt: str) -> CfgNode:
    """A teacher's yacs config (safe YAML unless allowed) with `opts` merged. The YAML may
    hold kd_det's keys (a teacher trained with tools/train_net.py, a MobileNetV2 or
    EfficientNet-Lite0 backbone)."""
    tcfg = get_cfg()
    add_kd_config(tcfg)
    add_mobilenet_config(tcfg)
    add_efficientnet_config(tcfg)
    try:
        tcfg.merge_from_file(path, allow_unsafe=allow_unsafe)
    except Exception as e:
        hint = ("" if allow_unsafe else " It is read as safe YAML: a !!python tag could run "
                f"code. If you trust the file and need its tags, pass `{unsafe_opt}` on the "
                "command line (a config file cannot set it).")
        raise ValueError(f"{key}={path!r} could not be read: {e}.{hint}") from e
    tcfg.merge_from_list(list(opts))
    if tcfg.MODEL.META_ARCHITECTURE == "DistillRCNN":
        raise ValueError(
            f"{key}={path!r} describes a DistillRCNN; give the config the teacher was "
            "trained with (e.g. GeneralizedRCNN), or export a student first."
        )
    skip_imagenet_init(tcfg)  # the teacher's trained weights replace them
    return tcfg


def teacher_specs(cfg: CfgNode) -> List[Tuple[str, str, str]]:
    """[(config file, weights, key naming them)] of every teacher: KD.TEACHERS when set,
    else KD.TEACHER."""
    if cfg.KD.TEACHERS:
        return [(c, w, f"KD.TEACHERS[{i}]") for i, (c, w) in enumerate(cfg.KD.TEACHERS)]
    return [(cfg.KD.TEACHER.CONFIG_FILE, cfg.KD.TEACHER.WEIGHTS, "KD.TEACHER.CONFIG_FILE")]


def build_teacher_cfgs(cfg: CfgNode) -> List[CfgNode]:
    """Each teacher's own config (see build_teacher_cfg)."""
    return [build_teacher_cfg(cfg, i) for i in range(len(teacher_specs(cfg)))]


def build_teacher_cfg(cfg: CfgNode, index: int = 0) -> CfgNode:
    """Teacher `index`'s own config: its YAML + KD.TEACHER.OPTS, on the student's device,
    with MODEL.WEIGHTS its trained weights."""
    config_file, weights, key = teacher_specs(cfg)[index]
    path = _resolve_config_file(config_file, key)
    tcfg = _read_yacs_teacher(path, cfg.KD.TEACHER.OPTS, cfg.KD.TEACHER.ALLOW_UNSAFE_YAML,
                              key, "KD.TEACHER.ALLOW_UNSAFE_YAML True")
    tcfg.MODEL.DEVICE = cfg.MODEL.DEVICE
    tcfg.MODEL.WEIGHTS = weights
    tcfg.freeze()
    return tcfg


def build_teacher(tcfg: CfgNode, key: str = "KD.TEACHER.WEIGHTS") -> torch.nn.Module:
    """Build the teacher and load its MODEL.WEIGHTS strictly (`key` names where they were
    given)."""
    teacher = build_model(tcfg)
    load_strict(teacher, tcfg.MODEL.WEIGHTS, key, checkpointer_cls=SafeDetectionCheckpointer)
    logger.info("Loaded teacher weights from %s", tcfg.MODEL.WEIGHTS)
    return teacher


def load_teacher(config_file: str, weights: str, opts: Sequence[str] = (),
                 device: str = "cpu", allow_unsafe_yaml: bool = False) -> torch.nn.Module:
    """A trained teacher for DistillRCNN's LazyConfig form, built and loaded strictly as
    KD.TEACHER.* are on the yacs path.

    Args:
        config_file: the config the teacher was trained with: a yacs ``.yaml`` or a
            LazyConfig ``.py`` file, or a Detectron2 model-zoo name of either. A ``.py``
            file is Python and runs when loaded: give only configs you trust.
        weights: its trained weights (``.pth``, or a model-zoo ``.pkl``); every tensor
            must match the model, none may be missing.
        opts: overrides, ``KEY VALUE`` pairs for yacs or ``a.b=c`` for a LazyConfig.
        device: where the teacher runs (the student's device).
        allow_unsafe_yaml: read a yacs file's !!python tags (they can run code). A
            LazyConfig ``.yaml`` cannot set it (kd_det.engine.lazy_yaml); a ``.py`` one
            or the command line can.
    """
    key = "model.teacher.config_file"
    path = _resolve_config_file(config_file, key)
    if path.endswith(".py"):
        lazy = LazyConfig.apply_overrides(LazyConfig.load(path), list(opts))
        if "model" not in lazy:
            raise ValueError(f"{key}={path!r} has no `model`: give the LazyConfig the "
                             "teacher was trained with.")
        teacher = instantiate(lazy.model)
        if isinstance(teacher, DistillerBase):
            raise ValueError(f"{key}={path!r} describes a distiller; give the config the "
                             "teacher was trained with, or export a student first.")
        teacher.to(device)
    else:
        tcfg = _read_yacs_teacher(path, opts, allow_unsafe_yaml, key,
                                  "model.teacher.allow_unsafe_yaml=True")
        tcfg.MODEL.DEVICE = device
        teacher = build_model(tcfg)
    load_strict(teacher, weights, "model.teacher.weights",
                checkpointer_cls=SafeDetectionCheckpointer)
    logger.info("Loaded teacher %s with weights %s", path, weights)
    return teacher
