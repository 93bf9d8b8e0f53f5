"""Multi-kernel MMD (DAN, Long et al. 2015) and the low-resolution face KD objective of
Wang et al. (ICCV-W 2019): lambda1 * hard CE + lambda2 * soft KD + lambda3 * MK-MMD between
L2-normalised student and teacher features.

The teacher is trained on high-resolution faces and the student on a low-resolution
augmented set, so their features come from different distributions; MK-MMD matches the
distributions instead of forcing each student feature onto its teacher feature, which is
what the plain normalised-feature L2 (the alternative, :func:`normalized_l2_loss`) does.
"""
from typing import Dict, Sequence

import torch
import torch.nn.functional as F

from .soft_ce import hinton_kd_loss

__all__ = ["DAN_MULTIPLIERS", "FEATURE_LOSSES", "dan_bandwidths", "face_kd_loss", "mk_mmd",
           "normalized_l2_loss", "normalized_mk_mmd"]

# Bandwidths relative to the base: DAN's kernel_mul=2, kernel_num=5 around it.
DAN_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)


def _check_pair(x: torch.Tensor, y: torch.Tensor, what: str) -> None:
    if x.dim() != 2 or x.shape != y.shape:
        raise ValueError(f"{what}: expected two (N, D) batches of one shape, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")


def dan_bandwidths(sq_dists: torch.Tensor,
                   multipliers: Sequence[float] = DAN_MULTIPLIERS) -> torch.Tensor:
    """multipliers x base, base = mean of the (M, M) squared distances over i != j.

    Detached: the bandwidth follows the data but is not something to optimise (a loss
    could otherwise shrink by widening its own kernels).

    Args:
        sq_dists: (M, M) squared distances of a batch, zero on the diagonal (M >= 2).
        multipliers: the bandwidths relative to the base.
    """
    m = sq_dists.shape[0]
    if m < 2:
        raise ValueError("MK-MMD needs at least two samples in the concatenated batch")
    base = sq_dists.detach().sum() / (m * m - m)  # the diagonal is zero
    return base.clamp_min(1e-12) * sq_dists.new_tensor(multipliers)


def mk_mmd(x: torch.Tensor, y: torch.Tensor,
           multipliers: Sequence[float] = DAN_MULTIPLIERS) -> torch.Tensor:
    """Biased MMD^2 between the batches x (N, D) and y (N, D) with a sum of Gaussian kernels.

    On z = [x; y]: d2_ij = ||z_i - z_j||^2, k(d2) = sum_b exp(-d2 / b) over the bandwidths of
    :func:`dan_bandwidths`, and MMD^2 = mean K_xx + mean K_yy - 2 mean K_xy, each mean over
    all N^2 pairs of its block (i = j included). The kernel is positive definite, so the
    value is >= 0 (up to rounding), and exactly 0 for y = x.

    Args:
        x, y: (N, D) batches (both get gradient; detach the teacher's before).
        multipliers: the kernels' bandwidths relative to :func:`dan_bandwidths`' base.
    """
    _check_pair(x, y, "mk_mmd")
    z = torch.cat([x.float(), y.float()])
    # Differences, not ||a||^2 + ||b||^2 - 2ab: exact zeros on identical rows.
    sq = (z[:, None, :] - z[None, :, :]).pow(2).sum(-1)
    bandwidths = dan_bandwidths(sq, multipliers)
    k = torch.exp(-sq[None] / bandwidths[:, None, None]).sum(0)
    n = x.shape[0]
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def normalized_l2_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    """mean over the batch of ||s/||s|| - t/||t||||^2 (sum over the feature dimension).

    Args:
        student_feat: (N, D).
        teacher_feat: (N, D); it gets no gradient.
    """
    _check_pair(student_feat, teacher_feat, "normalized_l2_loss")
    s = F.normalize(student_feat.float(), dim=1)
    t = F.normalize(teacher_feat.detach().float(), dim=1)
    return (s - t).pow(2).sum(1).mean()


def normalized_mk_mmd(student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    """:func:`mk_mmd` between the L2-normalised batches s/||s|| and t/||t|| (Wang et al.).

    Args:
        student_feat: (N, D).
        teacher_feat: (N, D); it gets no gradient.
    """
    return mk_mmd(F.normalize(student_feat.float(), dim=1),
                  F.normalize(teacher_feat.detach().float(), dim=1))


# The feature terms of face_kd_loss, by FACE.KD.FEATURE_LOSS: a new one is one entry.
FEATURE_LOSSES = {"mmd": normalized_mk_mmd, "l2": normalized_l2_loss}


def face_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                 labels: torch.Tensor, student_feat: torch.Tensor, teacher_feat: torch.Tensor,
                 hard_weight: float = 1.0, soft_weight: float = 1.0, feat_weight: float = 1.0,
                 temperature: float = 4.0, feature_loss: str = "mmd") -> Dict[str, torch.Tensor]:
    """The three weighted terms, to be summed (kept apart so that each is logged):

    loss_cls  = hard_weight * CE(z_s, y)                          (mean over the batch)
    loss_kd   = soft_weight * T^2 KL(p_t^T || p_s^T)              (:func:`hinton_kd_loss`)
    loss_<f>  = feat_weight * FEATURE_LOSSES[f](s, t)  (f = feature_loss: "mmd",
                :func:`normalized_mk_mmd`, the paper's; "l2", :func:`normalized_l2_loss`)

    Args:
        student_logits, teacher_logits: (N, identities). The teacher side gets no gradient.
        labels: (N,) identities y.
        student_feat, teacher_feat: (N, D) embeddings s and t (not normalised).
        hard_weight, soft_weight, feat_weight: lambda1, lambda2, lambda3.
        temperature: T of the soft term.
        feature_loss: a key of FEATURE_LOSSES.
    """
    if feature_loss not in FEATURE_LOSSES:
        raise ValueError(f"feature_loss={feature_loss!r}: use one of {tuple(FEATURE_LOSSES)}")
    feat = FEATURE_LOSSES[feature_loss](student_feat, teacher_feat)
    return {
        "loss_cls": hard_weight * F.cross_entropy(student_logits.float(), labels),
        "loss_kd": soft_weight * hinton_kd_loss(student_logits, teacher_logits, temperature),
        f"loss_{feature_loss}": feat_weight * feat,
    }
