"""ClsDistiller: one trainable student, its frozen teachers and a registered method."""
from typing import Dict, List, Optional, Sequence

import torch
from detectron2.utils.events import get_event_storage
from torch import nn

from kd_det.modeling.diagnostics import grad_norms, term_name
from kd_det.modeling.frozen import DistillerBase

from .methods import ClsMethod
from .models import ClassifierNet

__all__ = ["ClsDistiller"]


class ClsDistiller(DistillerBase):
    """The student, the frozen teachers and the method (classification.methods) whose
    losses train them; in eval mode it returns the student's logits.

    Trainable state (saved in checkpoints) is `student` and the method's module, under the
    method's module_name (FitNets' `regressor`, MEAL V2's `discriminator`); the teachers
    stay out of it. Every `diagnostics_period` iterations (those i with (i + 1) % period
    == 0, as CLS.CURVE_PERIOD counts them) each loss's gradient norm on the student goes to
    the event storage as grad_norm/<term> (the loss without "loss_"): what each term of
    the method does.
    """

    def __init__(self, student: ClassifierNet, method: ClsMethod,
                 teachers: Sequence[ClassifierNet] = (), diagnostics_period: int = 0):
        super().__init__()
        self.student = student
        self.diagnostics_period = diagnostics_period
        for i, t in enumerate(teachers):
            self.add_teacher(f"teacher{i}", t)
        self.method = method
        module = method.build_module(student, list(teachers))
        if module is not None:
            self.add_module(method.module_name, module)

    @property
    def method_module(self) -> Optional[nn.Module]:
        return getattr(self, self.method.module_name) if self.method.module_name else None

    @torch.no_grad()
    def teacher_outputs(self, x: torch.Tensor, upto: int = -1) -> List[Dict]:
        """Every teacher's forward_features(x, upto), without autograd."""
        return [t.forward_features(x, upto) for t in self.teachers.values()]

    def forward(self, batch):
        x, y = batch
        if not self.training:
            return self.student(x)
        losses = self.method(self, x, y)
        period = self.diagnostics_period
        storage = get_event_storage() if period else None
        if storage is not None and (storage.iter + 1) % period == 0:
            params = [p for p in self.student.parameters() if p.requires_grad]
            norms = grad_norms(losses, params)
            storage.put_scalars(**{f"grad_norm/{term_name(k)}": v for k, v in norms.items()},
                                smoothing_hint=False)
        return losses
