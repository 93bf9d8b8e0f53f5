"""Classification distillation methods, in one registry.

A method is a frozen dataclass registered in ``CLS_METHOD_REGISTRY``: ``name`` is its
CLS.METHOD value, its fields are its typed settings, ``from_config(cfg)`` reads (and
checks) its CLS.* keys, ``build_module`` gives the trainable parameters it owns beside the
student (FitNets' regressor, MEAL V2's discriminator), and calling it on a batch gives its
losses. A new method is one loss in kd_det.losses plus one registered class;
``ClsDistiller`` does not change.
"""
import dataclasses
from typing import ClassVar, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.utils.events import get_event_storage
from detectron2.utils.registry import Registry
from torch import nn

from kd_det.losses import (
    FNKD_FORMS,
    ensemble_soft_cross_entropy,
    fnkd_loss,
    hint_l2_loss,
    hinton_kd_loss,
    meal_v2_discriminator_loss,
)

from .models import ClassifierNet, Discriminator, build_regressor

__all__ = ["CLS_METHOD_REGISTRY", "ClsMethod", "build_cls_method", "cls_method_names",
           "CrossEntropy", "HintonKD", "FitNets", "FNKD", "MEALV2"]

CLS_METHOD_REGISTRY = Registry("CLS_METHOD")
CLS_METHOD_REGISTRY.__doc__ = """Classification distillation methods (frozen dataclasses with
a CLS.METHOD `name`, from_config and __call__(model, x, y))."""

Losses = Dict[str, torch.Tensor]


class ClsMethod:
    """Interface of a registered method (the dataclass fields are its settings)."""

    name: ClassVar[str]
    # How many teachers CLS.TEACHER.WEIGHTS must list: at least, at most (None: no limit).
    teachers: ClassVar[Tuple[int, Optional[int]]] = (1, 1)
    # Attribute under which ClsDistiller holds the module of build_module (its
    # state_dict prefix).
    module_name: ClassVar[Optional[str]] = None

    @classmethod
    def from_config(cls, cfg) -> "ClsMethod":
        raise NotImplementedError

    def build_module(self, student: ClassifierNet,
                     teachers: List[ClassifierNet]) -> Optional[nn.Module]:
        """Trainable parameters the method owns beside the student, or None."""
        return None

    def module_lr(self) -> Optional[float]:
        """The learning rate of the module's own optimizer group (None: SOLVER.BASE_LR)."""
        return None

    def __call__(self, model, x: torch.Tensor, y: torch.Tensor) -> Losses:
        """The losses of one training batch; `model` is the ClsDistiller (its student,
        teacher_outputs and the method's module)."""
        raise NotImplementedError


def cls_method_names() -> Tuple[str, ...]:
    return tuple(m.name for _, m in CLS_METHOD_REGISTRY)


def build_cls_method(cfg) -> ClsMethod:
    """The method CLS.METHOD names, its teacher count and settings checked."""
    c = cfg.CLS
    methods = {m.name: m for _, m in CLS_METHOD_REGISTRY}
    if c.METHOD not in methods:
        raise ValueError(f"CLS.METHOD={c.METHOD!r}: use one of {cls_method_names()}")
    method = methods[c.METHOD]
    n, (least, most) = len(c.TEACHER.WEIGHTS), method.teachers
    if most == 0 and n:
        raise ValueError(f"CLS.TEACHER.WEIGHTS is set but CLS.METHOD is {c.METHOD!r} (no "
                         "teacher): choose a distillation method or clear the key")
    if least == most and n != least:
        raise ValueError(
            f"CLS.METHOD={c.METHOD!r} takes exactly {'one' if least == 1 else least} "
            f"teacher(s); CLS.TEACHER.WEIGHTS has {n}: give the model_final.pth of a "
            "CLS.METHOD none teacher run")
    if n < least:
        raise ValueError(
            f"CLS.METHOD={c.METHOD!r} needs K >= {least} teachers; CLS.TEACHER.WEIGHTS has "
            f"{n}: train teachers with different SEED and list their weights")
    return method.from_config(cfg)


@CLS_METHOD_REGISTRY.register()
@dataclasses.dataclass(frozen=True)
class CrossEntropy(ClsMethod):
    """CLS.METHOD "none": the network alone with CE (a student baseline, or a teacher)."""

    name: ClassVar[str] = "none"
    teachers: ClassVar[Tuple[int, Optional[int]]] = (0, 0)

    @classmethod
    def from_config(cls, cfg):
        return cls()

    def __call__(self, model, x, y):
        return {"loss_cls": F.cross_entropy(model.student(x), y)}


@CLS_METHOD_REGISTRY.register()
@dataclasses.dataclass(frozen=True)
class HintonKD(ClsMethod):
    """CLS.METHOD "kd" (Hinton et al. 2015): alpha_hard CE + alpha_soft T^2 KL (CLS.KD.*)."""

    temperature: float = 4.0
    alpha_hard: float = 0.1
    alpha_soft: float = 0.9
    name: ClassVar[str] = "kd"

    @staticmethod
    def kd_settings(cfg) -> Dict[str, float]:
        k = cfg.CLS.KD
        if k.TEMPERATURE <= 0:
            raise ValueError(f"CLS.KD.TEMPERATURE={k.TEMPERATURE} must be > 0")
        return {"temperature": k.TEMPERATURE, "alpha_hard": k.ALPHA_HARD,
                "alpha_soft": k.ALPHA_SOFT}

    @classmethod
    def from_config(cls, cfg):
        return cls(**cls.kd_settings(cfg))

    def __call__(self, model, x, y):
        s = model.student(x)
        t = model.teacher_outputs(x)[0]["logits"]
        return {"loss_cls": self.alpha_hard * F.cross_entropy(s, y),
                "loss_kd": self.alpha_soft * hinton_kd_loss(s, t, self.temperature)}


@CLS_METHOD_REGISTRY.register()
@dataclasses.dataclass(frozen=True)
class FitNets(HintonKD):
    """CLS.METHOD "fitnets" (Romero et al. 2015), both stages in one run: for the first
    `stage1_iters` iterations the hint loss alone trains the student up to its guided
    stage and a conv regressor onto the teacher's hint stage; then Hinton KD (CLS.KD.*)
    trains the whole student. The stage follows the iteration, so a resumed run lands in
    the right one."""

    stage1_iters: int = 200
    guided_stage: int = 1
    hint_stage: int = 1
    hint_weight: float = 1.0
    hint_normalize: str = "mean"
    name: ClassVar[str] = "fitnets"
    module_name: ClassVar[Optional[str]] = "regressor"

    @classmethod
    def from_config(cls, cfg):
        f, c = cfg.CLS.FITNETS, cfg.CLS
        if not 0 < f.STAGE1_ITERS < cfg.SOLVER.MAX_ITER:
            raise ValueError(
                f"CLS.FITNETS.STAGE1_ITERS={f.STAGE1_ITERS} must lie strictly between 0 and "
                f"SOLVER.MAX_ITER={cfg.SOLVER.MAX_ITER} (stage 2 needs iterations too)")
        if not 0 <= f.GUIDED_STAGE < len(c.MODEL.WIDTHS):
            raise ValueError(f"CLS.FITNETS.GUIDED_STAGE={f.GUIDED_STAGE}: the student has "
                             f"stages 0..{len(c.MODEL.WIDTHS) - 1}")
        if not 0 <= f.HINT_STAGE < len(c.TEACHER.WIDTHS):
            raise ValueError(f"CLS.FITNETS.HINT_STAGE={f.HINT_STAGE}: the teacher has "
                             f"stages 0..{len(c.TEACHER.WIDTHS) - 1}")
        if f.GUIDED_STAGE != f.HINT_STAGE:
            raise ValueError(
                f"CLS.FITNETS.GUIDED_STAGE={f.GUIDED_STAGE} and HINT_STAGE={f.HINT_STAGE}: "
                "both networks halve the resolution after stage 0, so only stages with the "
                "same index match in size; make them equal")
        if f.HINT_NORMALIZE not in ("mean", "batch"):
            raise ValueError(f"CLS.FITNETS.HINT_NORMALIZE={f.HINT_NORMALIZE!r}: use 'mean' or "
                             "'batch'")
        return cls(**cls.kd_settings(cfg), stage1_iters=f.STAGE1_ITERS,
                   guided_stage=f.GUIDED_STAGE, hint_stage=f.HINT_STAGE,
                   hint_weight=f.HINT_WEIGHT, hint_normalize=f.HINT_NORMALIZE)

    def build_module(self, student, teachers):
        return build_regressor(student.widths[self.guided_stage],
                               teachers[0].widths[self.hint_stage])

    def __call__(self, model, x, y):
        if get_event_storage().iter >= self.stage1_iters:
            return super().__call__(model, x, y)
        guided = model.student.forward_features(x, self.guided_stage)["stages"][-1]
        hint = model.teacher_outputs(x, self.hint_stage)[0]["stages"][-1]
        loss = hint_l2_loss(model.method_module(guided), hint, self.hint_normalize)
        return {"loss_hint": self.hint_weight * loss}


@CLS_METHOD_REGISTRY.register()
@dataclasses.dataclass(frozen=True)
class FNKD(ClsMethod):
    """CLS.METHOD "fnkd" (Xu et al. 2020): CE + weight * H(q_fn^t, q_fn^s), each network's
    classifier on its own norm-clipped ("official") or rescaled ("paper") features."""

    form: str = "official"
    tau: float = 2.0
    weight: float = 9.0
    name: ClassVar[str] = "fnkd"

    @classmethod
    def from_config(cls, cfg):
        f = cfg.CLS.FNKD
        if f.FORM not in FNKD_FORMS:
            raise ValueError(f"CLS.FNKD.FORM={f.FORM!r}: use one of {FNKD_FORMS}")
        if f.TAU <= 0:
            raise ValueError(f"CLS.FNKD.TAU={f.TAU} must be > 0")
        return cls(f.FORM, f.TAU, f.WEIGHT)

    def __call__(self, model, x, y):
        s = model.student.forward_features(x)
        t = model.teacher_outputs(x)[0]
        teacher = model.teachers["teacher0"]
        fn = fnkd_loss(s["feat"], model.student.fc.weight, model.student.fc.bias, t["feat"],
                       teacher.fc.weight, teacher.fc.bias, self.tau, self.form)
        return {"loss_cls": F.cross_entropy(s["logits"], y), "loss_fnkd": self.weight * fn}


@CLS_METHOD_REGISTRY.register()
@dataclasses.dataclass(frozen=True)
class MEALV2(ClsMethod):
    """CLS.METHOD "meal_v2" (Shen & Savvides 2020): soft CE to the mean of K >= 2 teachers
    plus a logit discriminator, trained jointly with one optimizer (its own group at
    CLS.MEAL.DISC_LR)."""

    disc_hidden: Tuple[int, ...] = (8, 4)
    disc_lr: float = 1e-4
    disc_weight: float = 1.0
    name: ClassVar[str] = "meal_v2"
    teachers: ClassVar[Tuple[int, Optional[int]]] = (2, None)
    module_name: ClassVar[Optional[str]] = "discriminator"

    @classmethod
    def from_config(cls, cfg):
        c, m = cfg.CLS.NUM_CLASSES, cfg.CLS.MEAL
        hidden = tuple(m.DISC_HIDDEN) or (c // 8, c // 64)  # the official C/8, C/64
        if any(h < 1 for h in hidden):
            raise ValueError(
                f"CLS.MEAL.DISC_HIDDEN={tuple(m.DISC_HIDDEN)} gives hidden widths {hidden} "
                f"for CLS.NUM_CLASSES={c}: the official C/8, C/64 vanish below 64 classes; "
                "set explicit widths, e.g. CLS.MEAL.DISC_HIDDEN (8, 4)")
        return cls(hidden, m.DISC_LR, m.DISC_WEIGHT)

    def build_module(self, student, teachers):
        return Discriminator(student.fc.out_features, self.disc_hidden)

    def module_lr(self):
        return self.disc_lr

    def __call__(self, model, x, y):
        s = model.student(x)
        t_logits = [t["logits"] for t in model.teacher_outputs(x)]
        disc = meal_v2_discriminator_loss(model.method_module, s, t_logits)
        return {"loss_soft": ensemble_soft_cross_entropy(s, t_logits),
                "loss_disc": self.disc_weight * disc}
