"""Backbones kd_det registers in Detectron2's BACKBONE_REGISTRY."""
from .mobilenet import (  # noqa: F401
    MobileNetV2,
    add_mobilenet_config,
    build_mobilenetv2_backbone,
    build_mobilenetv2_fpn_backbone,
    skip_imagenet_init,
)
