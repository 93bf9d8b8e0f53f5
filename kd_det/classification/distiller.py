"""ClsDistiller: one trainable student, its frozen teachers and the per-method loss terms."""
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from kd_det.losses import (
    ensemble_soft_cross_entropy,
    fnkd_loss,
    hint_l2_loss,
    hinton_kd_loss,
    meal_v2_discriminator_loss,
)
from kd_det.modeling.frozen import DistillerBase

from .models import ClassifierNet

__all__ = ["ClsDistiller"]


class ClsDistiller(DistillerBase):
    """CLS.METHOD switch over the loss; in eval mode it returns the student's logits.

    Trainable state (saved in checkpoints) is `student` (+ `regressor` for FitNets,
    `discriminator` for MEAL V2); teachers are frozen and kept out of it.
    FitNets' stage is set from outside (:class:`FitNetsStageHook`): 1 = hint only,
    2 = Hinton KD on the whole student.
    """

    def __init__(self, method: str, student: ClassifierNet,
                 teachers: Optional[List[ClassifierNet]] = None, *,
                 temperature: float = 4.0, alpha_hard: float = 0.1, alpha_soft: float = 0.9,
                 regressor: Optional[nn.Module] = None, guided_stage: int = 1,
                 hint_stage: int = 1, hint_weight: float = 1.0, hint_normalize: str = "mean",
                 fnkd_form: str = "official", fnkd_tau: float = 2.0, fnkd_weight: float = 9.0,
                 discriminator: Optional[nn.Module] = None, disc_weight: float = 1.0):
        super().__init__()
        self.method = method
        self.student = student
        for i, t in enumerate(teachers or []):
            self.add_teacher(f"teacher{i}", t)
        self.temperature, self.alpha_hard, self.alpha_soft = temperature, alpha_hard, alpha_soft
        self.regressor = regressor
        self.guided_stage, self.hint_stage = guided_stage, hint_stage
        self.hint_weight, self.hint_normalize = hint_weight, hint_normalize
        self.fnkd_form, self.fnkd_tau, self.fnkd_weight = fnkd_form, fnkd_tau, fnkd_weight
        self.discriminator = discriminator
        self.disc_weight = disc_weight
        self.stage = 1 if method == "fitnets" else 2

    def _teacher_outputs(self, x, upto: int = -1) -> List[Dict]:
        with torch.no_grad():
            return [t.forward_features(x, upto) for t in self.teachers.values()]

    def _kd(self, s_logits, t_logits, y) -> Dict[str, torch.Tensor]:
        return {
            "loss_cls": self.alpha_hard * F.cross_entropy(s_logits, y),
            "loss_kd": self.alpha_soft * hinton_kd_loss(s_logits, t_logits, self.temperature),
        }

    def forward(self, batch):
        x, y = batch
        if not self.training:
            return self.student(x)
        if self.method == "fitnets" and self.stage == 1:
            guided = self.student.forward_features(x, self.guided_stage)["stages"][-1]
            hint = self._teacher_outputs(x, self.hint_stage)[0]["stages"][-1]
            loss = hint_l2_loss(self.regressor(guided), hint, self.hint_normalize)
            return {"loss_hint": self.hint_weight * loss}
        s = self.student.forward_features(x)
        if self.method == "none":
            return {"loss_cls": F.cross_entropy(s["logits"], y)}
        ts = self._teacher_outputs(x)
        if self.method in ("kd", "fitnets"):
            return self._kd(s["logits"], ts[0]["logits"], y)
        if self.method == "fnkd":
            teacher = next(iter(self.teachers.values()))
            fn = fnkd_loss(s["feat"], self.student.fc.weight, self.student.fc.bias,
                           ts[0]["feat"], teacher.fc.weight, teacher.fc.bias,
                           self.fnkd_tau, self.fnkd_form)
            return {"loss_cls": F.cross_entropy(s["logits"], y),
                    "loss_fnkd": self.fnkd_weight * fn}
        if self.method == "meal_v2":
            t_logits = [t["logits"] for t in ts]
            disc = meal_v2_discriminator_loss(self.discriminator, s["logits"], t_logits)
            return {"loss_soft": ensemble_soft_cross_entropy(s["logits"], t_logits),
                    "loss_disc": self.disc_weight * disc}
        raise ValueError(f"CLS.METHOD={self.method!r} is not a classification KD method")
