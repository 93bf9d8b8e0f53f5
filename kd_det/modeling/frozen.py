"""Frozen teachers that stay out of checkpoints, optimizers and DDP.

A teacher registered with :meth:`DistillerBase.add_teacher` is not a submodule: it is
absent from ``state_dict()``, ``parameters()`` and therefore from the optimizer and from
DistributedDataParallel's bucket list, yet it follows ``.to()``/``.cuda()`` and stays in
``eval()`` (BatchNorm statistics frozen) whatever ``train()`` is called with.
"""
import os
from typing import Dict

import torch
from torch import nn

__all__ = ["DistillerBase", "freeze", "load_strict"]


def freeze(module: nn.Module) -> nn.Module:
    """eval() and requires_grad=False on every parameter."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def load_strict(module: nn.Module, path: str, key: str, checkpointer_cls=None) -> None:
    """Load `path` into `module`, refusing missing, unexpected or mis-shaped weights.

    A teacher that silently keeps random weights is the most reported distillation bug,
    so any incompatibility is an error naming the config `key` that gave the path.
    `checkpointer_cls` defaults to kd_det's SafeCheckpointer (fvcore's, refusing code by
    name); detection passes SafeDetectionCheckpointer so that model-zoo .pkl files load too.
    """
    if checkpointer_cls is None:
        from ..checkpoint import SafeCheckpointer as checkpointer_cls
    if not path:
        raise ValueError(f"{key} is empty: give the path of the trained teacher's weights.")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{key}={path!r} does not exist: give the teacher's weights file.")

    class _Recording(checkpointer_cls):
        def _load_model(self, checkpoint):
            self.incompatible = super()._load_model(checkpoint)
            return self.incompatible

    ckpt = _Recording(module)
    try:
        ckpt.load(path, checkpointables=[])
    except Exception as e:  # unreadable / not a checkpoint
        raise ValueError(f"{key}={path!r} could not be read as a checkpoint: {e}") from e
    incompatible = ckpt.incompatible
    problems = []
    if incompatible.missing_keys:
        problems.append(f"missing keys {sorted(incompatible.missing_keys)[:10]}")
    if incompatible.unexpected_keys:
        problems.append(f"unexpected keys {sorted(incompatible.unexpected_keys)[:10]}")
    if incompatible.incorrect_shapes:
        problems.append(f"wrong shapes {incompatible.incorrect_shapes[:10]}")
    if problems:
        raise ValueError(
            f"{key}={path!r} does not match the teacher model: "
            + "; ".join(problems)
            + ". Check that the teacher config describes the model these weights were "
            "trained with."
        )
    bad = [k for k, v in module.state_dict().items()
           if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{key}={path!r} holds NaN or infinite values in {bad[:10]}: the "
                         "teacher diverged or the file is corrupt; give a finite checkpoint.")


class DistillerBase(nn.Module):
    """Base for modules that train a student against frozen teachers."""

    def __init__(self):
        super().__init__()
        object.__setattr__(self, "_teachers", {})

    def add_teacher(self, name: str, module: nn.Module) -> nn.Module:
        freeze(module)
        self._teachers[name] = module
        return module

    @property
    def teachers(self) -> Dict[str, nn.Module]:
        return dict(self._teachers)

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        for t in self._teachers.values():
            t._apply(fn, *args, **kwargs)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        for t in self._teachers.values():
            t.eval()
        return self

    @torch.no_grad()
    def teacher_params_snapshot(self) -> Dict[str, torch.Tensor]:
        """Copies of every teacher tensor, for checks that teachers never change."""
        return {
            f"{n}.{k}": v.detach().clone()
            for n, t in self._teachers.items()
            for k, v in t.state_dict().items()
        }
