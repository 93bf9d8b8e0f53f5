"""Detection models: DistillRCNN (registered in META_ARCH_REGISTRY) and its parts."""
from . import backbone  # noqa: F401  (registers kd_det's backbones)
from .distill_rcnn import DistillRCNN
from .frozen import DistillerBase, freeze, load_strict
from .kd_terms import build_kd_terms
from .teacher import load_teacher

__all__ = ["DistillRCNN", "DistillerBase", "build_kd_terms", "freeze", "load_strict",
           "load_teacher"]
