"""Classification distillation on Fashion-MNIST: Hinton KD, FitNets, Feature-Normalised KD
and MEAL V2 on one small student, with teachers trained by the same tool (CLS.METHOD none).
"""
from .config import add_cls_kd_config, check_cls_config
from .distiller import ClsDistiller
from .methods import CLS_METHOD_REGISTRY, ClsMethod, build_cls_method
from .models import ClassifierNet, Discriminator
from .trainer import ClsTrainer

__all__ = [
    "CLS_METHOD_REGISTRY",
    "ClsMethod",
    "ClassifierNet",
    "ClsDistiller",
    "ClsTrainer",
    "Discriminator",
    "add_cls_kd_config",
    "build_cls_method",
    "check_cls_config",
]
