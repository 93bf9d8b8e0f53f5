"""Hint (FitNets-style) feature imitation, plain or PKD-normalised, optionally masked."""
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["hint_l2_loss", "standardize_channels", "feature_imitation_loss", "linear_pkd_loss"]


def hint_l2_loss(adapted: torch.Tensor, target: torch.Tensor, normalize: str = "mean"):
    """||adapt(V) - Z||^2 between an adapted student map and a teacher map.

    Args:
        adapted: the student's map after the regressor, (N, ...).
        target: the teacher's map, of the same shape; it gets no gradient.
        normalize: "mean" over every element (the default, as FitNets re-implementations
            do, so that the weight does not depend on the map size) or "batch": summed
            over each sample's elements, averaged over the batch. The official FitNets
            code reduces as "batch" and multiplies by 0.5 as well, so it equals 0.5 times
            this; a weight of 0.5 reproduces it.
    """
    _check_shapes(adapted, target)
    adapted, target = adapted.float(), target.detach().float()
    if normalize == "mean":
        return F.mse_loss(adapted, target)  # one fused kernel: the hint is on every KD step
    if normalize == "batch":
        return (adapted - target).pow(2).flatten(1).sum(1).mean()
    raise ValueError(f"normalize must be 'mean' or 'batch', got {normalize!r}")


def standardize_channels(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(x - mean) / (std + eps) per channel over (N, H, W), as PKD (Cao et al. 2022)
    normalises FPN maps so that imitation ignores their scale.

    Args:
        x: (N, C, H, W) feature map.
        eps: added to the (biased) standard deviation.
    """
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
    return (x - mean) / (std + eps)


def feature_imitation_loss(
    adapted: torch.Tensor,
    target: torch.Tensor,
    normalize: str = "none",
    mask: Optional[torch.Tensor] = None,
    bg_weight: float = 0.0,
) -> torch.Tensor:
    """Squared error between an adapted student map and a teacher map, (N, C, H, W).

    Args:
        adapted: the adapted student map, (N, C, H, W).
        target: the teacher map, of the same shape; it gets no gradient.
        normalize: "none" (mean squared error, Chen et al.'s hint) or "pkd" (both maps
            standardised per channel, MSE / 2 = 1 - Pearson correlation up to a constant;
            PKD, NeurIPS 2022, MMRazor pkd_loss).
        mask: optional (N, 1, H, W) foreground mask in [0, 1] (e.g. ground-truth boxes,
            FGFI / DeFeat). The loss is then the mean error over foreground positions plus
            `bg_weight` times the mean error over background positions; an image batch
            without foreground contributes only its background term.
        bg_weight: the background term's weight when `mask` is given (0: foreground only).
    """
    _check_shapes(adapted, target)
    a, t = adapted.float(), target.detach().float()
    scale = 1.0
    if normalize == "pkd" and mask is None:
        return _pkd_loss(a, t)
    if normalize == "pkd":
        a, t, scale = standardize_channels(a), standardize_channels(t), 0.5
    elif normalize != "none":
        raise ValueError(f"normalize must be 'none' or 'pkd', got {normalize!r}")
    if mask is None:
        return scale * F.mse_loss(a, t)
    err = (a - t).pow(2).sum(1, keepdim=True)  # (N, 1, H, W), summed over channels
    fg = mask.to(err.dtype)
    c = a.shape[1]
    loss = (err * fg).sum() / (fg.sum() * c).clamp(min=1.0)
    if bg_weight > 0:
        bg = 1.0 - fg
        loss = loss + bg_weight * (err * bg).sum() / (bg.sum() * c).clamp(min=1.0)
    return scale * loss


def _teacher_var_mean(t: torch.Tensor):
    """The teacher map's per-channel variance and mean over (N, H, W), (1, C, 1, 1): a
    target, so no graph."""
    with torch.no_grad():
        return torch.var_mean(t.float(), dim=(0, 2, 3), unbiased=False, keepdim=True)


def _pkd_from_moments(var_a, cov, var_t, eps: float) -> torch.Tensor:
    """0.5 * mean over channels of mean((a^ - t^)^2), a^ = (a - mu) / (sigma + eps), from
    each channel's variances and covariance (exact: mean((a^ - t^)^2) = var_a / d_a^2
    - 2 cov / (d_a d_t) + var_t / d_t^2 with d = sigma + eps)."""
    # clamped so that a constant channel gets a zero gradient, not sqrt's infinite one
    d_a, d_t = var_a.clamp(min=1e-20).sqrt() + eps, var_t.sqrt() + eps
    return 0.5 * (var_a / d_a.pow(2) - 2 * cov / (d_a * d_t) + var_t / d_t.pow(2)).mean()


def _pkd_loss(a: torch.Tensor, t: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """0.5 * MSE(standardize_channels(a), standardize_channels(t)) from per-channel
    moments, without the standardised maps whose autograd graph made the hint the dearest
    KD term."""
    var_t, mu_t = _teacher_var_mean(t)
    var_a, _ = torch.var_mean(a, dim=(0, 2, 3), unbiased=False)
    cov = (a * (t - mu_t)).mean(dim=(0, 2, 3))
    return _pkd_from_moments(var_a, cov, var_t.flatten(), eps)


def linear_pkd_loss(weight: torch.Tensor, v: torch.Tensor, t: torch.Tensor,
                    eps: float = 1e-6) -> torch.Tensor:
    """The PKD loss of a 1x1-conv adapted student map, conv(v) = W v + b, against t, from
    the student's (C_s, C_s) channel covariance and its (C_s, C_t) covariance with the
    teacher: var(W v)_c = w_c S w_c and cov(W v, t)_c = w_c X_c, and the bias cancels in
    the standardisation. Equal to feature_imitation_loss(conv(v), t, "pkd"), without the
    (N, C_t, H, W) adapted map and its gradient: the hint's cost on a thin student.

    Args:
        weight: the adapter's (C_t, C_s, 1, 1) or (C_t, C_s) weight.
        v: the student map, (N, C_s, H, W).
        t: the teacher map, (N, C_t, H, W), of the same size; it gets no gradient.
    """
    n, c_s, h, w = v.shape
    if t.shape[0] != n or t.shape[-2:] != v.shape[-2:]:
        raise ValueError(f"student map {tuple(v.shape)} and teacher map {tuple(t.shape)} "
                         "must have the same batch and size")
    var_t, _ = _teacher_var_mean(t)
    m = n * h * w
    vf = v.float().flatten(2)  # (N, C_s, HW): no copy
    vc = vf - vf.mean(dim=(0, 2), keepdim=True)  # centred, so E[vc t] is the covariance
    # Batched matmuls over the images (einsum would copy the teacher map to contract it).
    s = torch.bmm(vc, vc.transpose(1, 2)).sum(0) / m
    x = torch.bmm(vc, t.detach().float().flatten(2).transpose(1, 2)).sum(0) / m
    w_ = weight.float().reshape(weight.shape[0], c_s)
    var_a = ((w_ @ s) * w_).sum(1)
    cov = (w_ * x.t()).sum(1)
    return _pkd_from_moments(var_a, cov, var_t.flatten(), eps)


def _check_shapes(adapted, target):
    if adapted.shape != target.shape:
        raise ValueError(
            f"adapted student feature {tuple(adapted.shape)} and teacher feature "
            f"{tuple(target.shape)} must have the same shape"
        )
