"""What each loss does to a model: the diagnostics every trainer logs."""
import math
from typing import Dict, List

import torch
from torch import nn

__all__ = ["grad_norms", "term_name"]


def term_name(loss_name: str) -> str:
    """A loss's name in the diagnostics: without its "loss_" prefix, because Detectron2's
    console printer lists every scalar whose name contains "loss" among the losses."""
    return loss_name[len("loss_"):] if loss_name.startswith("loss_") else loss_name


def grad_norms(losses: Dict[str, torch.Tensor], params: List[nn.Parameter]) -> Dict[str, float]:
    """The L2 norm of the gradient each loss alone puts on `params` (0 for a loss that does
    not reach them); the graph is kept and no .grad is touched, so the step is unchanged."""
    out = {}
    for name, loss in losses.items():
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        out[name] = math.sqrt(sum(float(g.pow(2).sum()) for g in grads if g is not None))
    return out
