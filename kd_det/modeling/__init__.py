"""Detection models: DistillRCNN (registered in META_ARCH_REGISTRY) and its parts."""
from .distill_rcnn import DistillRCNN
from .frozen import DistillerBase, freeze, load_strict

__all__ = ["DistillRCNN", "DistillerBase", "freeze", "load_strict"]
