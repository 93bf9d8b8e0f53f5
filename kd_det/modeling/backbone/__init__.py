"""Backbones kd_det registers in Detectron2's BACKBONE_REGISTRY."""
from detectron2.config import CfgNode as CN

from .efficientnet_lite import (  # noqa: F401
    EfficientNetLite0,
    add_efficientnet_config,
    build_efficientnet_lite0_backbone,
    build_efficientnet_lite0_fpn_backbone,
)
from .mobilenet import (  # noqa: F401
    MobileNetV2,
    add_mobilenet_config,
    build_mobilenetv2_backbone,
    build_mobilenetv2_fpn_backbone,
)


def skip_imagenet_init(cfg: CN) -> None:
    """Build `cfg`'s kd_det backbones (those whose keys it has) without ImageNet weights:
    for a model that is about to load trained weights, which then needs neither the read
    nor the package."""
    for node in ("MOBILENET", "EFFICIENTNET"):
        if node in cfg.MODEL:
            cfg.MODEL[node].IMAGENET_WEIGHTS = ""
