"""FaceDistiller: the trainable face network and, for KD, its frozen teacher."""
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from detectron2.utils.events import get_event_storage

from kd_det.losses import face_kd_loss
from kd_det.modeling.diagnostics import grad_norms, term_name
from kd_det.modeling.frozen import DistillerBase

from .models import FaceNet

__all__ = ["FaceDistiller", "gradient_diagnostics"]


def gradient_diagnostics(losses: Dict[str, torch.Tensor], params,
                         reference: str) -> Dict[str, float]:
    """For each loss: its gradient norm on `params` and, for the others, the ratio of that
    norm to the `reference` loss's and the cosine between the two gradients (negative: the
    term pulls the network against the reference), from the norm of their sum:
    cos = (|a + b|^2 - |a|^2 - |b|^2) / (2 |a| |b|). The step is unchanged."""
    ref = losses[reference]
    sums = {f"{k}+{reference}": v + ref for k, v in losses.items() if k != reference}
    norms = grad_norms({**losses, **sums}, params)
    r = max(norms[reference], 1e-12)
    out = {f"grad_norm/{term_name(k)}": norms[k] for k in losses}
    for k in losses:
        if k != reference:
            n = max(norms[k], 1e-12)
            out[f"grad_ratio/{term_name(k)}"] = norms[k] / r
            out[f"grad_cos/{term_name(k)}"] = (norms[f"{k}+{reference}"] ** 2 - norms[k] ** 2
                                               - norms[reference] ** 2) / (2 * n * r)
    return out


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
                 feature_loss: str = "mmd", diagnostics_period: int = 0):
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
        self.diagnostics_period = diagnostics_period

    def forward(self, batch: Dict[str, torch.Tensor]):
        if not self.training:
            return self.student.embed(batch["image"])
        s = self.student(batch["image"])
        if not self.teachers:
            return {"loss_cls": F.cross_entropy(s["logits"], batch["label"])}
        with torch.no_grad():
            t = self.teachers["teacher"](batch[self.teacher_key])
        losses = face_kd_loss(s["logits"], t["logits"], batch["label"], s["feat"], t["feat"],
                              **self.kd_kwargs)
        if self.diagnostics_period:
            storage = get_event_storage()
            if storage.iter % self.diagnostics_period == 0:
                storage.put_scalars(**{f"kd_diag/{k}": v for k, v in
                                       self._diagnostics(batch, losses, t["logits"]).items()},
                                    smoothing_hint=False)
        return losses

    def _diagnostics(self, batch, losses, teacher_logits) -> Dict[str, float]:
        """Each weighted term's value, the KD terms' gradients against CE's
        (:func:`gradient_diagnostics`, on the student's parameters) and the teacher's top-1
        accuracy (%) on the input it is given and on the student's (LR-augmented) input:
        how much it knows about what the student sees."""
        params = [p for p in self.student.parameters() if p.requires_grad]
        out = {f"term/{term_name(k)}": float(v.detach()) for k, v in losses.items()}
        out.update(gradient_diagnostics(losses, params, "loss_cls"))
        with torch.no_grad():
            on_student = self.teachers["teacher"](batch["image"])["logits"]
        for name, logits in (("own_input", teacher_logits), ("student_input", on_student)):
            correct = (logits.argmax(1) == batch["label"]).float().mean().item()
            out[f"teacher_acc/{name}"] = 100.0 * correct
        return out
