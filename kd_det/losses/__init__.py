"""Distillation losses: pure tensor functions (torch only, no Detectron2), shared by the
detection meta-architecture and every auxiliary trainer."""
from .classification import (
    FNKD_FORMS,
    ensemble_soft_cross_entropy,
    feature_normalized_logits,
    fnkd_loss,
    meal_v2_discriminator_loss,
)
from .hint import feature_imitation_loss, hint_l2_loss, linear_pkd_loss, standardize_channels
from .mmd import (
    DAN_MULTIPLIERS,
    FEATURE_LOSSES,
    dan_bandwidths,
    face_kd_loss,
    mk_mmd,
    normalized_l2_loss,
    normalized_mk_mmd,
)
from .regression import bounded_l2_loss, teacher_l2_loss
from .soft_ce import (
    binary_soft_cross_entropy,
    binary_soft_cross_entropy_to_probs,
    class_weights,
    hinton_kd_loss,
    soft_cross_entropy,
    soft_cross_entropy_to_probs,
)
from .sr import gaussian_variance_logit, pisr_teacher_loss, vid_gaussian_loss, vid_laplace_loss

__all__ = [
    "DAN_MULTIPLIERS",
    "FEATURE_LOSSES",
    "FNKD_FORMS",
    "binary_soft_cross_entropy",
    "binary_soft_cross_entropy_to_probs",
    "bounded_l2_loss",
    "class_weights",
    "dan_bandwidths",
    "ensemble_soft_cross_entropy",
    "face_kd_loss",
    "feature_imitation_loss",
    "linear_pkd_loss",
    "feature_normalized_logits",
    "fnkd_loss",
    "gaussian_variance_logit",
    "hint_l2_loss",
    "hinton_kd_loss",
    "meal_v2_discriminator_loss",
    "mk_mmd",
    "normalized_l2_loss",
    "normalized_mk_mmd",
    "pisr_teacher_loss",
    "soft_cross_entropy",
    "soft_cross_entropy_to_probs",
    "standardize_channels",
    "teacher_l2_loss",
    "vid_gaussian_loss",
    "vid_laplace_loss",
]
