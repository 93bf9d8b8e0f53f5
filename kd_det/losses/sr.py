"""Super-resolution distillation losses: the PISR teacher objective and two VID forms.

PISR (Lee et al., ECCV 2020) trains a teacher that sees the HR image and distils it into
an FSRCNN student with variational information distillation (VID, Ahn et al., CVPR 2019).
PISR models the teacher feature with a Laplace distribution per element; the original
VID uses a Gaussian with one learned variance per channel. Both are here so that they
can be compared with the same student.
"""
import math
from typing import Dict

import torch
import torch.nn.functional as F

__all__ = [
    "gaussian_variance_logit",
    "pisr_teacher_loss",
    "vid_gaussian_loss",
    "vid_laplace_loss",
]


def _check_same(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ")


def pisr_teacher_loss(
    sr: torch.Tensor,
    hr: torch.Tensor,
    encoded: torch.Tensor,
    lr: torch.Tensor,
    imitation_weight: float = 1e-4,
) -> Dict[str, torch.Tensor]:
    """L1(D(E(HR)), HR) and imitation_weight * L1(E(HR), LR).

    The imitation term keeps the encoder's LR-size image close to the real LR input, so
    that the decoder the student inherits has learnt on inputs that look like its own.

    Args:
        sr: the teacher's output D(E(HR)), shaped as `hr`.
        hr: the HR image.
        encoded: the encoder's LR-size image E(HR), shaped as `lr`.
        lr: the real LR input; it gets no gradient.
        imitation_weight: the imitation term's weight.
    """
    _check_same(sr, hr, "teacher output vs HR")
    _check_same(encoded, lr, "teacher encoder output vs LR (is HR divisible by the scale?)")
    return {
        "loss_rec": F.l1_loss(sr, hr),
        "loss_imitation": imitation_weight * F.l1_loss(encoded, lr.detach()),
    }


def vid_laplace_loss(
    mean: torch.Tensor,
    scale_logit: torch.Tensor,
    target: torch.Tensor,
    scale_factor: float = 0.1,
    eps: float = 1e-8,
) -> torch.Tensor:
    """PISR's per-element Laplace VID: mean of log(2b) + |mu - t| / b.

    b = scale_factor * softplus(scale_logit) + eps for every channel and pixel. The
    official code adds a constant (C/2 log 2pi) that changes neither the gradient nor
    the ranking; it is left out so the value is the plain negative log-likelihood.

    Args:
        mean: mu, the VID head's prediction of the teacher feature.
        scale_logit: the head's per-element scale, before softplus; shaped as `target`.
        target: the teacher feature t; it gets no gradient.
        scale_factor, eps: of b above.
    """
    _check_same(mean, target, "VID mean vs teacher feature")
    _check_same(scale_logit, target, "VID scale vs teacher feature")
    b = scale_factor * F.softplus(scale_logit) + eps
    return (torch.log(2 * b) + (mean - target.detach()).abs() / b).mean()


def gaussian_variance_logit(init_var: float = 5.0, eps: float = 1e-5) -> float:
    """The alpha with softplus(alpha) + eps = init_var (VID starts every variance at 5).

    Args:
        init_var: the initial variance sigma^2 (> eps).
        eps: as in :func:`vid_gaussian_loss`.
    """
    if init_var <= eps:
        raise ValueError(f"init_var={init_var} must exceed eps={eps}")
    return math.log(math.expm1(init_var - eps))


def vid_gaussian_loss(
    mean: torch.Tensor,
    alpha: torch.Tensor,
    target: torch.Tensor,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Ahn et al.'s VID: mean of 1/2 [(mu - t)^2 / sigma^2 + log sigma^2].

    sigma^2 = softplus(alpha) + eps is one learned variance per channel (alpha has shape
    (C,)), shared by all pixels, as in the authors' code.

    Args:
        mean: mu, the VID head's prediction of the teacher feature, (N, C, ...).
        alpha: (C,) variance parameters.
        target: the teacher feature t, shaped as `mean`; it gets no gradient.
        eps: added to the variance.
    """
    _check_same(mean, target, "VID mean vs teacher feature")
    if alpha.dim() != 1 or alpha.numel() != target.shape[1]:
        raise ValueError(
            f"alpha must hold one value per channel ({target.shape[1]}), got {tuple(alpha.shape)}"
        )
    var = (F.softplus(alpha) + eps).view(1, -1, *([1] * (target.dim() - 2)))
    return (0.5 * ((mean - target.detach()) ** 2 / var + torch.log(var))).mean()
