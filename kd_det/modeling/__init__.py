"""Detection models: DistillRCNN (registered in META_ARCH_REGISTRY) and its parts."""
from . import backbone  # noqa: F401  (registers the MobileNetV2 backbones)
from .distill_rcnn import DistillRCNN
from .frozen import DistillerBase, freeze, load_strict

__all__ = ["DistillRCNN", "DistillerBase", "freeze", "load_strict"]
