"""What kd_det's ImageNet backbones share: one nn.Sequential `features` read at the ends of
its stages, ImageNet weights found in an offline package, Detectron2's norms and freezing,
and Detectron2's FPN on top."""
import importlib.util
import os
from typing import Dict, Sequence, Tuple

import torch
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
from torch import nn

__all__ = ["SequentialBackbone", "package_file", "imagenet_weights", "build_fpn"]


def package_file(package: str, relative_path: str) -> str:
    """Path of a file shipped inside an installed package, found without importing it
    (the weights packages pin old torch versions), or '' when it is not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return ""
    path = os.path.join(list(spec.submodule_search_locations)[0], relative_path)
    return path if os.path.isfile(path) else ""


def imagenet_weights(setting: str, node: str, package: str, relative_path: str) -> str:
    """The file `node`.IMAGENET_WEIGHTS names: a path, '' (none), or "auto" for the file
    of the installed `package` (refused, with the fix, when it is not installed)."""
    if setting != "auto":
        if setting and not os.path.isfile(setting):
            raise FileNotFoundError(
                f"{node}.IMAGENET_WEIGHTS={setting!r} does not exist; install "
                f"{package.replace('_', '-')} (--no-deps) or give a path, or '' to train "
                "from scratch.")
        return setting
    path = package_file(package, relative_path)
    if not path:
        raise FileNotFoundError(
            f"{node}.IMAGENET_WEIGHTS='auto' but the package {package.replace('_', '-')} is "
            "not installed: run scripts/setup_env.sh, give the file's path, or set '' to "
            "train from scratch.")
    return path


class SequentialBackbone(Backbone):
    """A Backbone over `self.features` (an nn.Sequential, built by the subclass) whose
    output named n is the output of entry stages[n][0] - 1, at stride stages[n][1].

    Subclasses call __init__ first (it checks the settings), build `features` and load
    their weights, then call `_finish`. `node` is their config node (e.g.
    "MODEL.MOBILENET"), named in messages; the stages are given in order, so FREEZE_AT k
    freezes the stem (k = 1) or everything up to the end of the (k - 1)-th stage.
    """

    def __init__(self, node: str, stages: Dict[str, Tuple[int, int]],
                 out_features: Sequence[str], norm: str):
        super().__init__()
        for name in out_features:
            if name not in stages:
                raise ValueError(f"{node}.OUT_FEATURES: {name!r} is not one of {list(stages)}")
        if norm not in ("BN", "FrozenBN", "SyncBN"):
            raise ValueError(f"{node}.NORM={norm!r}: use BN, FrozenBN or SyncBN")
        self._node = node
        self._freeze_ends = {1: 1, **{k: end for k, (end, _) in enumerate(stages.values(), 2)}}
        self._out_features = list(out_features)
        self._name_after = {stages[n][0] - 1: n for n in out_features}
        self._out_feature_strides = {n: stages[n][1] for n in out_features}
        self._depth = max(stages[n][0] for n in out_features)  # entries `features` needs

    def _finish(self, norm: str, freeze_at: int) -> None:
        if norm == "FrozenBN":
            self.features = FrozenBatchNorm2d.convert_frozen_batchnorm(self.features)
        elif norm == "SyncBN":
            self.features = nn.SyncBatchNorm.convert_sync_batchnorm(self.features)
        self._out_feature_channels = {}
        for i, name in self._name_after.items():
            convs = [m for m in self.features[i].modules() if isinstance(m, nn.Conv2d)]
            self._out_feature_channels[name] = convs[-1].out_channels
        self.freeze(freeze_at)

    def freeze(self, freeze_at: int = 0):
        """Freeze the stem (1) and the stages up to the (freeze_at - 1)-th (2..5)."""
        if freeze_at not in self._freeze_ends and freeze_at != 0:
            raise ValueError(f"{self._node}.FREEZE_AT={freeze_at}: use 0.."
                             f"{max(self._freeze_ends)}")
        if freeze_at:
            frozen = self.features[:self._freeze_ends[freeze_at]]
            for p in frozen.parameters():
                p.requires_grad_(False)
            FrozenBatchNorm2d.convert_frozen_batchnorm(frozen)
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


def build_fpn(cfg, bottom_up: Backbone) -> FPN:
    """Detectron2's FPN (MODEL.FPN.*) with a max-pooled p6 on `bottom_up`."""
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
