"""Small Fashion-MNIST classifiers that expose their stages, pooled feature and classifier
(FitNets needs an inner stage, FNKD the feature f and the W, b of z = W f + b), plus the
FitNets regressor and the MEAL V2 discriminator."""
from typing import Dict, Sequence

import torch
from torch import nn

__all__ = ["ClassifierNet", "Discriminator", "build_classifier", "build_regressor"]


def _conv_bn(c_in: int, c_out: int, stride: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs), 1x1 projection when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = _conv_bn(c_in, c_out, stride)
        self.conv2 = _conv_bn(c_out, c_out, 1)
        self.shortcut = (_conv_bn(c_in, c_out, stride, kernel=1)
                         if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x):
        y = self.conv2(torch.relu(self.conv1(x)))
        return torch.relu(y + self.shortcut(x))


class ClassifierNet(nn.Module):
    """stages (stride 1, then 2 each) -> global average pool -> linear classifier `fc`.

    arch "cnn": one conv-BN-ReLU per stage (the student); "resnet": a 3x3 stem then one
    basic block per stage (the teachers).
    """

    def __init__(self, arch: str, widths: Sequence[int], num_classes: int, in_channels: int = 1):
        super().__init__()
        if arch not in ("cnn", "resnet"):
            raise ValueError(f"arch must be 'cnn' or 'resnet', got {arch!r}")
        c = in_channels
        if arch == "resnet":
            self.stem = nn.Sequential(_conv_bn(c, widths[0], 1), nn.ReLU(inplace=True))
            c = widths[0]
        else:
            self.stem = nn.Identity()
        stages = []
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(BasicBlock(c, w, stride) if arch == "resnet"
                          else nn.Sequential(_conv_bn(c, w, stride), nn.ReLU(inplace=True)))
            c = w
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(c, num_classes)
        self.widths = tuple(widths)

    def forward_features(self, x: torch.Tensor, upto: int = -1) -> Dict[str, object]:
        """{"stages": [outputs]} and, unless stopped after stage `upto`, "feat" and "logits"."""
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            outs.append(x)
            if i == upto:
                return {"stages": outs}
        feat = x.mean((2, 3))
        return {"stages": outs, "feat": feat, "logits": self.fc(feat)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)["logits"]


def build_classifier(node, num_classes: int) -> ClassifierNet:
    """From a CLS.MODEL or CLS.TEACHER config node."""
    return ClassifierNet(node.ARCH, tuple(node.WIDTHS), num_classes)


def build_regressor(c_student: int, c_teacher: int) -> nn.Module:
    """FitNets regressor r: a 3x3 conv from the guided to the hint layer's channels."""
    return nn.Conv2d(c_student, c_teacher, 3, padding=1)


class Discriminator(nn.Module):
    """MEAL V2: logits C -> hidden... -> 2, ReLU after every layer, the last included (as
    the official 1x1-conv MLP does; on a logit vector a 1x1 conv is a linear layer)."""

    def __init__(self, num_classes: int, hidden: Sequence[int]):
        super().__init__()
        layers, c = [], num_classes
        for w in (*hidden, 2):
            layers += [nn.Linear(c, w), nn.ReLU(inplace=True)]
            c = w
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
