"""Teacher-bounded L2 regression (Chen et al. 2017, eq. 4)."""
import torch

from .soft_ce import _reduce

__all__ = ["bounded_l2_loss", "teacher_l2_loss"]


def bounded_l2_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    target: torch.Tensor,
    margin: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Per box: ||R_s - y||^2 if ||R_s - y||^2 + m > ||R_t - y||^2, else 0.

    The teacher is an upper bound, not a target: the student is only pushed towards the
    ground truth while it is not better than the teacher by at least the margin.

    Args:
        student, teacher, target: (N, D) regression outputs R_s, R_t and targets y. The
            teacher side gets no gradient.
        margin: m.
        reduction: over the N boxes ("mean", "sum" or "none").
    """
    if not (student.shape == teacher.shape == target.shape):
        raise ValueError(
            "student, teacher and target boxes must have one shape, got "
            f"{tuple(student.shape)}, {tuple(teacher.shape)}, {tuple(target.shape)}"
        )
    err_s = (student.float() - target.float()).pow(2).sum(-1)
    err_t = (teacher.detach().float() - target.float()).pow(2).sum(-1)
    active = (err_s + margin > err_t).to(err_s.dtype)
    return _reduce(err_s * active, reduction)


def teacher_l2_loss(student: torch.Tensor, teacher: torch.Tensor, reduction: str = "mean"):
    """Plain L2 to the teacher's outputs, per box: ||R_s - R_t||^2 (the ablation baseline).

    Args:
        student, teacher: (N, D) regression outputs R_s and R_t. The teacher side gets no
            gradient.
        reduction: over the N boxes ("mean", "sum" or "none").
    """
    if student.shape != teacher.shape:
        raise ValueError(
            f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} differ in shape"
        )
    return _reduce((student.float() - teacher.detach().float()).pow(2).sum(-1), reduction)
