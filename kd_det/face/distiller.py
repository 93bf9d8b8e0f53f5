"""FaceDistiller: the trainable face network and, for KD, its frozen teacher."""
from typing import Dict, Optional

import torch
import torch.nn.functional as F

from kd_det.losses import face_kd_loss
from kd_det.modeling.frozen import DistillerBase

from .models import FaceNet

__all__ = ["FaceDistiller"]


class FaceDistiller(DistillerBase):
    """Without a teacher: CE on the (LR-augmented) faces. With one: Wang et al.'s
    lambda1 CE + lambda2 soft KD + lambda3 feature loss (MK-MMD or normalised L2), the
    teacher seeing the original face (teacher_input "hr") or the student's copy ("lr").

    In eval mode it returns the student's L2-normalised embeddings. Only `student` is
    trainable and checkpointed; the teacher stays frozen and out of the state dict.
    """

    def __init__(self, student: FaceNet, teacher: Optional[FaceNet] = None, *,
                 teacher_input: str = "hr", hard_weight: float = 1.0, soft_weight: float = 1.0,
                 feat_weight: float = 1.0, temperature: float = 4.0,
                 feature_loss: str = "mmd"):
        super().__init__()
        self.student = student
        if teacher is not None:
            self.add_teacher("teacher", teacher)
        if teacher_input not in ("hr", "lr"):
            raise ValueError(f"teacher_input={teacher_input!r}: use 'hr' or 'lr'")
        self.teacher_key = "hr" if teacher_input == "hr" else "image"
        self.kd_kwargs = dict(hard_weight=hard_weight, soft_weight=soft_weight,
                              feat_weight=feat_weight, temperature=temperature,
                              feature_loss=feature_loss)

    def forward(self, batch: Dict[str, torch.Tensor]):
        if not self.training:
            return self.student.embed(batch["image"])
        s = self.student(batch["image"])
        if not self.teachers:
            return {"loss_cls": F.cross_entropy(s["logits"], batch["label"])}
        with torch.no_grad():
            t = self.teachers["teacher"](batch[self.teacher_key])
        return face_kd_loss(s["logits"], t["logits"], batch["label"], s["feat"], t["feat"],
                            **self.kd_kwargs)
