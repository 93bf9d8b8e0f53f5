"""PISR step 2: an FSRCNN student distilled from the frozen privileged-information teacher."""
from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from kd_det.modeling.frozen import DistillerBase

from .models import FSRCNN, PISRTeacher, VIDHead

__all__ = ["PISRDistiller"]


class PISRDistiller(DistillerBase):
    """Student = FSRCNN (+ VID head, trained with it); teacher frozen, out of state_dict.

    Loss: L1(S(LR), HR) + vid_weight * VID(student 'expanding' feature -> teacher's, where
    the teacher decodes its own encoding of HR). The student starts from the teacher's
    decoder, whose weights already map LR-like images to HR.
    """

    def __init__(self, student: FSRCNN, teacher: PISRTeacher, vid: VIDHead,
                 vid_weight: float = 1e-6, init_from_teacher: bool = True):
        super().__init__()
        self.student = student
        self.vid = vid
        self.vid_weight = vid_weight
        self.add_teacher("teacher", teacher)
        if init_from_teacher:
            self.student.load_state_dict(teacher.decoder.state_dict())

    def sr_network(self) -> nn.Module:
        """The student: the weights both losses train (the VID head only serves VID)."""
        return self.student

    def forward(self, batch: Dict[str, torch.Tensor]):
        if not self.training:
            return self.student(batch["lr"])
        sr, s_feat = self.student.forward_with_feature(batch["lr"])
        with torch.no_grad():
            _, _, t_feat = self.teachers["teacher"].forward_with_feature(batch["hr"])
        return {
            "loss_rec": F.l1_loss(sr, batch["hr"]),
            "loss_vid": self.vid_weight * self.vid(s_feat, t_feat),
        }
