"""Soft cross-entropy: the one distillation cross-entropy every kd_det method shares.

Chen et al. (2017) weight the classes (background 1.5) and use it as is; Hinton KD is
the same quantity minus the teacher's entropy, times T^2 (so it equals T^2 * KL).
"""
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = [
    "class_weights",
    "soft_cross_entropy",
    "binary_soft_cross_entropy",
    "soft_cross_entropy_to_probs",
    "binary_soft_cross_entropy_to_probs",
    "hinton_kd_loss",
]


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean() if loss.numel() else loss.sum()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _check_shapes(student: torch.Tensor, teacher: torch.Tensor) -> None:
    if student.shape != teacher.shape:
        raise ValueError(f"student logits {tuple(student.shape)} and teacher targets "
                         f"{tuple(teacher.shape)} must have the same shape")


def class_weights(num_classes: int, bg_index: int, bg_weight: float, **like) -> torch.Tensor:
    """Per-class weights w_c: 1 everywhere, `bg_weight` at `bg_index`.

    Detectron2's ROI classifier has K+1 columns with background LAST (index K);
    pass ``bg_index=-1`` or ``K`` for it.

    Args:
        num_classes: C, the length of the weight vector.
        bg_index: the background column.
        bg_weight: its weight (Chen et al.: 1.5).
        like: dtype / device of the result, as for torch.ones.
    """
    w = torch.ones(num_classes, **like)
    w[bg_index] = bg_weight
    return w


def soft_cross_entropy(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    weight: Optional[torch.Tensor] = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """L = -sum_c w_c * P_t(c) * log P_s(c), with P = softmax(z / T) over the last dim.

    No T^2 factor: Chen et al. use T = 1; :func:`hinton_kd_loss` adds it.

    Args:
        student_logits, teacher_logits: (..., C). The teacher side gets no gradient.
        temperature: T.
        weight: optional (C,) class weights w_c (see :func:`class_weights`).
        reduction: over all leading dims: "mean" (default), "sum" or "none".
    """
    _check_shapes(student_logits, teacher_logits)
    pt = F.softmax(teacher_logits.detach().float() / temperature, dim=-1)
    return soft_cross_entropy_to_probs(student_logits, pt, temperature, weight, reduction)


def soft_cross_entropy_to_probs(
    student_logits: torch.Tensor,
    teacher_probs: torch.Tensor,
    temperature: float = 1.0,
    weight: Optional[torch.Tensor] = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """:func:`soft_cross_entropy` against given target probabilities P_t (e.g. the mean
    of several teachers' tempered softmax).

    Args:
        student_logits: (..., C).
        teacher_probs: (..., C) target distribution; it gets no gradient.
        temperature, weight, reduction: as in :func:`soft_cross_entropy`.
    """
    _check_shapes(student_logits, teacher_probs)
    log_ps = F.log_softmax(student_logits.float() / temperature, dim=-1)
    prod = teacher_probs.detach().float() * log_ps
    if weight is not None:
        prod = prod * weight.to(prod)
    return _reduce(-prod.sum(-1), reduction)


def binary_soft_cross_entropy(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    bg_weight: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Two-class (object, background) form of :func:`soft_cross_entropy` for sigmoid
    logits such as RPN objectness: p = sigmoid(x / T),
    L = -[p_t log p_s + bg_weight * (1 - p_t) log(1 - p_s)].

    Args:
        student_logits, teacher_logits: objectness logits of one shape. The teacher side
            gets no gradient.
        temperature: T.
        bg_weight: the background term's weight (1.0 = unweighted).
        reduction: over all elements: "mean", "sum" or "none".
    """
    _check_shapes(student_logits, teacher_logits)
    pt = torch.sigmoid(teacher_logits.detach().float() / temperature)
    return binary_soft_cross_entropy_to_probs(student_logits, pt, temperature, bg_weight,
                                              reduction)


def binary_soft_cross_entropy_to_probs(
    student_logits: torch.Tensor,
    teacher_probs: torch.Tensor,
    temperature: float = 1.0,
    bg_weight: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """:func:`binary_soft_cross_entropy` against given object probabilities p_t (e.g. the
    mean of several teachers' tempered sigmoid).

    Args:
        student_logits: (...) sigmoid logits.
        teacher_probs: (...) target object probabilities; they get no gradient.
        temperature, bg_weight, reduction: as in :func:`binary_soft_cross_entropy`.
    """
    _check_shapes(student_logits, teacher_probs)
    xs = student_logits.float() / temperature
    pt = teacher_probs.detach().float()
    loss = -(pt * F.logsigmoid(xs) + bg_weight * (1 - pt) * F.logsigmoid(-xs))
    return _reduce(loss, reduction)


def hinton_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 4.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Hinton et al. (2015): T^2 * KL(p_t^T || p_s^T), summed over classes.

    Computed as T^2 * (soft CE - teacher entropy) so that there is one soft CE in kd_det;
    the entropy term carries no gradient, so the gradient is T (p_s - p_t) / N.

    Args:
        student_logits, teacher_logits: (..., C). The teacher side gets no gradient.
        temperature: T.
        reduction: over all leading dims: "mean", "sum" or "none".
    """
    ce = soft_cross_entropy(student_logits, teacher_logits, temperature, reduction="none")
    pt_log = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    entropy = -(pt_log.exp() * pt_log).sum(-1)
    return _reduce(temperature**2 * (ce - entropy), reduction)
