"""Classification distillation terms beyond Hinton KD: Feature-Normalised KD (Xu et al. 2020,
both the paper and the official-code form) and MEAL V2 (Shen & Savvides 2020).

Every cross-entropy between distributions goes through :func:`soft_cross_entropy`; Hinton KD
is :func:`kd_det.losses.hinton_kd_loss` and the FitNets hint is :func:`hint_l2_loss`.
"""
import math
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from .soft_ce import soft_cross_entropy

__all__ = [
    "FNKD_FORMS",
    "ensemble_soft_cross_entropy",
    "feature_normalized_logits",
    "fnkd_loss",
    "meal_v2_discriminator_loss",
]

FNKD_FORMS = ("official", "paper")


def feature_normalized_logits(feat: torch.Tensor, weight: torch.Tensor,
                              bias: Optional[torch.Tensor], tau: float,
                              form: str = "official") -> torch.Tensor:
    """Logits of a linear classifier (weight (C, D), bias (C,)) on features (N, D),
    with the feature norm taken out.

    "paper":    tau * (W f) / ||f||               (no bias, every norm rescaled to tau)
    "official": W f_hat + b, f_hat = f * min(||f||, tau) / ||f||  (only norms > tau are
                clipped to tau; aztc/FNKD)

    Args:
        feat: (N, D) features f.
        weight, bias: the classifier's (C, D) W and (C,) b (bias may be None).
        tau: the norm the features are rescaled ("paper") or clipped ("official") to.
        form: "official" or "paper".
    """
    if feat.dim() != 2 or weight.dim() != 2 or feat.shape[1] != weight.shape[1]:
        raise ValueError(
            f"features {tuple(feat.shape)} and classifier weight {tuple(weight.shape)} must be "
            "(N, D) and (C, D)")
    norm = feat.float().norm(dim=1, keepdim=True).clamp_min(1e-12)
    if form == "paper":
        return tau * F.linear(feat.float() / norm, weight.float())
    if form == "official":
        f_hat = feat.float() * norm.clamp_max(tau) / norm
        return F.linear(f_hat, weight.float(), None if bias is None else bias.float())
    raise ValueError(f"FNKD form must be one of {FNKD_FORMS}, got {form!r}")


def fnkd_loss(student_feat: torch.Tensor, student_weight: torch.Tensor,
              student_bias: Optional[torch.Tensor], teacher_feat: torch.Tensor,
              teacher_weight: torch.Tensor, teacher_bias: Optional[torch.Tensor],
              tau: float = 2.0, form: str = "official") -> torch.Tensor:
    """H(q_fn^t, q_fn^s), mean over the batch, without the weight (lambda^2 or w).

    Each network uses its own classifier on its own normalised features; the teacher side
    gets no gradient (soft_cross_entropy detaches it).

    Args:
        student_feat, teacher_feat: (N, D_s) and (N, D_t) pooled features.
        student_weight, student_bias, teacher_weight, teacher_bias: each network's last
            linear layer (see :func:`feature_normalized_logits`).
        tau, form: as for :func:`feature_normalized_logits`.
    """
    zs = feature_normalized_logits(student_feat, student_weight, student_bias, tau, form)
    zt = feature_normalized_logits(teacher_feat, teacher_weight, teacher_bias, tau, form)
    return soft_cross_entropy(zs, zt)


def ensemble_soft_cross_entropy(student_logits: torch.Tensor,
                                teacher_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """MEAL V2: mean_n -sum_c q_c log softmax(z_s)_c, q = mean_k softmax(z_t^k); no hard term.

    log q is passed to soft_cross_entropy as the teacher "logits" (softmax(log q) = q).

    Args:
        student_logits: (N, C).
        teacher_logits: K >= 1 tensors (N, C); they get no gradient.
    """
    if len(teacher_logits) == 0:
        raise ValueError("ensemble_soft_cross_entropy needs at least one teacher")
    log_p = torch.stack([F.log_softmax(z.detach().float(), dim=-1) for z in teacher_logits])
    log_q = torch.logsumexp(log_p, dim=0) - math.log(len(teacher_logits))
    return soft_cross_entropy(student_logits, log_q)


def meal_v2_discriminator_loss(discriminator: Callable[[torch.Tensor], torch.Tensor],
                               student_logits: torch.Tensor,
                               teacher_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """BCE-with-logits of the discriminator on [student logits; mean teacher logits].

    Targets are [1, 0] for the student rows and [0, 1] for the teacher rows (official code).
    The student gets gradient through the discriminator; the teachers do not.

    Args:
        discriminator: (2N, C) logits -> (2N, 2) scores.
        student_logits: (N, C).
        teacher_logits: K tensors (N, C), averaged.
    """
    z_t = torch.stack([z.detach().float() for z in teacher_logits]).mean(0)
    if z_t.shape != student_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(z_t.shape)} must have the same shape")
    scores = discriminator(torch.cat([student_logits.float(), z_t], 0))
    n = student_logits.shape[0]
    target = scores.new_zeros(2 * n, 2)
    target[:n, 0] = 1.0
    target[n:, 1] = 1.0
    return F.binary_cross_entropy_with_logits(scores, target)
