"""Hint adaptation layers: map student feature maps onto the teacher's channels."""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from torch import nn

from ..losses import feature_imitation_loss, linear_pkd_loss

__all__ = ["HintAdapters"]


class HintAdapters(nn.Module):
    """One adapter per (student feature, teacher feature) pair, and the hint loss.

    The adapters keep fp32 master weights whatever the features' dtype (an adapter that
    follows a half-precision student breaks under autocast, mmrazor#190); their outputs
    come back in the student's dtype and the loss is taken in fp32 (kd_det.losses.hint).
    """

    def __init__(
        self,
        pairs: List[Tuple[str, str]],
        student_shapes: Dict[str, ShapeSpec],
        teacher_shapes: Dict[str, ShapeSpec],
        kind: str = "conv1x1",
        resize: str = "interpolate",
    ):
        super().__init__()
        for s, t in pairs:
            if s not in student_shapes:
                raise ValueError(f"KD.HINT.STUDENT_FEATURES: {s!r} is not a student backbone "
                                 f"output; available: {sorted(student_shapes)}")
            if t not in teacher_shapes:
                raise ValueError(f"KD.HINT.TEACHER_FEATURES: {t!r} is not a teacher backbone "
                                 f"output; available: {sorted(teacher_shapes)}")
        self.pairs = list(pairs)
        self.resize = resize
        self.adapters = nn.ModuleDict()
        for s, t in pairs:
            cs, ct = student_shapes[s].channels, teacher_shapes[t].channels
            if kind == "conv1x1":
                self.adapters[self._key(s, t)] = nn.Conv2d(cs, ct, kernel_size=1)
            elif cs != ct:
                raise ValueError(
                    f"KD.HINT.ADAPTER='none' needs equal channels, but student {s!r} has {cs} "
                    f"and teacher {t!r} has {ct}; use KD.HINT.ADAPTER='conv1x1'."
                )

    @staticmethod
    def _key(s: str, t: str) -> str:
        return f"{s}_to_{t}"

    @staticmethod
    def _adapt(conv: nn.Conv2d, v: torch.Tensor) -> torch.Tensor:
        """conv(v) in the student's dtype; outside autocast the input is cast to the
        weights' dtype first (autocast casts the weights itself)."""
        x = v if torch.is_autocast_enabled(v.device.type) else v.to(conv.weight.dtype)
        return conv(x).to(v.dtype)

    def forward(
        self,
        student_feats: Dict[str, torch.Tensor],
        teacher_feats: Dict[str, torch.Tensor],
        normalize: str = "none",
        masks: Optional[Dict[str, torch.Tensor]] = None,
        bg_weight: float = 0.0,
    ) -> Dict[str, torch.Tensor]:
        """{"<student>_to_<teacher>": imitation loss of adapt(V) against Z} for every pair
        (see kd_det.losses.feature_imitation_loss; `masks` is keyed by teacher feature)."""
        out = {}
        for s, t in self.pairs:
            v, z = student_feats[s], teacher_feats[t]
            key = self._key(s, t)
            conv = self.adapters[key] if key in self.adapters else None
            if (normalize == "pkd" and masks is None and conv is not None
                    and v.shape[-2:] == z.shape[-2:]):
                # From channel covariances, without the adapted map; the bias cancels in
                # the standardisation, and its zero gradient keeps every parameter in the
                # graph (DDP without find_unused_parameters needs that).
                out[key] = linear_pkd_loss(conv.weight, v, z) + 0.0 * conv.bias.sum()
                continue
            if conv is not None:
                v = self._adapt(conv, v)
            if v.shape[-2:] != z.shape[-2:]:
                if self.resize != "interpolate":
                    raise ValueError(
                        f"KD.HINT.RESIZE='error': student {s!r} is {tuple(v.shape[-2:])} but "
                        f"teacher {t!r} is {tuple(z.shape[-2:])}; pick features of equal "
                        "stride or set KD.HINT.RESIZE='interpolate'."
                    )
                v = F.interpolate(v, size=z.shape[-2:], mode="bilinear", align_corners=False)
            out[key] = feature_imitation_loss(v, z, normalize,
                                              masks[t] if masks is not None else None,
                                              bg_weight)
        return out
