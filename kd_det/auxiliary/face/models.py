"""Face recognition networks: a convolutional trunk, a BatchNorm'd embedding (the feature
that identification compares and that MK-MMD distils) and an identity classifier used
only for training.

The trunk is kd_det.auxiliary.classification's ClassifierNet (stages -> global average
pool -> linear), whose linear layer here outputs the embedding rather than class scores.
"""
from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kd_det.auxiliary.classification.models import ClassifierNet

__all__ = ["FaceNet", "build_face_net"]


class FaceNet(nn.Module):
    """arch "resnet" (the teacher: a stem and one basic block per stage) or "cnn" (the
    student: one conv per stage); stages run at 64, 32, 16, 8 px for four widths."""

    def __init__(self, arch: str, widths: Sequence[int], embed_dim: int, num_identities: int):
        super().__init__()
        self.trunk = ClassifierNet(arch, widths, embed_dim)
        self.bn = nn.BatchNorm1d(embed_dim)
        self.head = nn.Linear(embed_dim, num_identities)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """{"feat": the embedding (not normalised), "logits": identity scores}."""
        feat = self.bn(self.trunk(x))
        return {"feat": feat, "logits": self.head(feat)}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings: what a deployed recogniser computes per face."""
        return F.normalize(self.bn(self.trunk(x)), dim=1)


def build_face_net(node, cfg) -> FaceNet:
    """From a FACE.MODEL or FACE.TEACHER config node."""
    return FaceNet(node.ARCH, tuple(node.WIDTHS), cfg.FACE.EMBED_DIM, cfg.FACE.NUM_IDENTITIES)
