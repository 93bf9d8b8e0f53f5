"""The model each SR.MODE trains, in one registry: a mode is a builder function whose name
is the SR.MODE value, so a new SR method is its loss in kd_det.losses plus one registered
builder; SRTrainer does not change."""
import torch
from detectron2.utils.registry import Registry

from kd_det.modeling.frozen import load_strict

from .distiller import PISRDistiller
from .models import SRBaseline, VIDHead, build_fsrcnn, build_teacher

__all__ = ["SR_MODE_REGISTRY", "baseline", "teacher", "student"]

SR_MODE_REGISTRY = Registry("SR_MODE")
SR_MODE_REGISTRY.__doc__ = """cfg -> the module an SR.MODE trains (losses in training mode,
the SR image in eval mode)."""


@SR_MODE_REGISTRY.register()
def baseline(cfg) -> torch.nn.Module:
    """Plain FSRCNN trained with L1."""
    return SRBaseline(build_fsrcnn(cfg))


@SR_MODE_REGISTRY.register()
def teacher(cfg) -> torch.nn.Module:
    """PISR step 1: the teacher whose encoder sees the HR image."""
    return build_teacher(cfg)


@SR_MODE_REGISTRY.register()
def student(cfg) -> torch.nn.Module:
    """PISR step 2: FSRCNN from the trained teacher's decoder, L1 + VID to the teacher."""
    pisr_teacher = build_teacher(cfg)
    load_strict(pisr_teacher, cfg.SR.KD.TEACHER_WEIGHTS, key="SR.KD.TEACHER_WEIGHTS")
    fsrcnn = build_fsrcnn(cfg)
    vid = VIDHead(fsrcnn.feature_channels, cfg.SR.KD.VID_FORM,
                  laplace_scale_factor=cfg.SR.KD.VID_LAPLACE_SCALE_FACTOR,
                  gaussian_init_var=cfg.SR.KD.VID_GAUSSIAN_INIT_VAR)
    return PISRDistiller(fsrcnn, pisr_teacher, vid, cfg.SR.KD.VID_WEIGHT,
                         init_from_teacher=cfg.SR.KD.INIT_FROM_TEACHER)
