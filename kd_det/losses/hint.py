"""Hint (FitNets-style) feature imitation."""
import torch
import torch.nn.functional as F

__all__ = ["hint_l2_loss"]


def hint_l2_loss(adapted: torch.Tensor, target: torch.Tensor, normalize: str = "mean"):
    """||adapt(V) - Z||^2 between an adapted student map and a teacher map.

    normalize: "mean" (over every element; the default, as FitNets re-implementations
    do, so that gamma does not depend on the map size) or "batch" (summed over each
    sample's elements, averaged over the batch, as the official FitNets code does).
    """
    if adapted.shape != target.shape:
        raise ValueError(
            f"adapted student feature {tuple(adapted.shape)} and teacher feature "
            f"{tuple(target.shape)} must have the same shape"
        )
    adapted, target = adapted.float(), target.detach().float()
    if normalize == "mean":
        return F.mse_loss(adapted, target)  # one fused kernel: the hint is on every KD step
    if normalize == "batch":
        return (adapted - target).pow(2).flatten(1).sum(1).mean()
    raise ValueError(f"normalize must be 'mean' or 'batch', got {normalize!r}")
