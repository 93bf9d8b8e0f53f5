"""ClsDistiller: one trainable student, its frozen teachers and a registered method."""
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from kd_det.modeling.frozen import DistillerBase

from .methods import ClsMethod
from .models import ClassifierNet

__all__ = ["ClsDistiller"]


class ClsDistiller(DistillerBase):
    """The student, the frozen teachers and the method (classification.methods) whose
    losses train them; in eval mode it returns the student's logits.

    Trainable state (saved in checkpoints) is `student` and the method's module, under the
    method's module_name (FitNets' `regressor`, MEAL V2's `discriminator`); the teachers
    stay out of it.
    """

    def __init__(self, student: ClassifierNet, method: ClsMethod,
                 teachers: Sequence[ClassifierNet] = ()):
        super().__init__()
        self.student = student
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
        return self.method(self, x, y)
