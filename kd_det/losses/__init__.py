"""Distillation losses: pure tensor functions (torch only, no Detectron2), shared by the
detection meta-architecture and every auxiliary trainer."""
from .hint import hint_l2_loss
from .regression import bounded_l2_loss, teacher_l2_loss
from .soft_ce import binary_soft_cross_entropy, class_weights, hinton_kd_loss, soft_cross_entropy

__all__ = [
    "binary_soft_cross_entropy",
    "bounded_l2_loss",
    "class_weights",
    "hint_l2_loss",
    "hinton_kd_loss",
    "soft_cross_entropy",
    "teacher_l2_loss",
]
