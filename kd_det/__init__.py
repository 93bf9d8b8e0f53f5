"""kd_det: knowledge distillation for Detectron2.

``import kd_det`` registers the DistillRCNN meta-architecture, the MobileNetV2-FPN and
EfficientNet-Lite0-FPN backbones and kd_det's datasets; ``add_kd_config(cfg)`` adds the
KD.* keys, ``add_mobilenet_config(cfg)`` and ``add_efficientnet_config(cfg)`` the
backbones' MODEL.MOBILENET.* and MODEL.EFFICIENTNET.* keys.
"""
from . import modeling  # noqa: F401  (registers DistillRCNN and backbones)
from .config import add_kd_config, validate_kd_config
from .data import register_all
from .modeling.backbone import add_efficientnet_config, add_mobilenet_config

register_all()

__all__ = ["add_kd_config", "add_efficientnet_config", "add_mobilenet_config",
           "validate_kd_config"]
