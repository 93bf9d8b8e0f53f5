"""Low-resolution face recognition distillation on the Olivetti faces (Wang et al.,
ICCV-W 2019): a teacher trained on original-resolution faces is kept fixed, and a smaller
student trained on an LR-augmented set learns from it through soft KD and MK-MMD (or the
plain normalised-feature L2) on L2-normalised embeddings.
"""
from .config import add_face_config, check_face_config
from .distiller import FaceDistiller
from .models import FaceNet
from .trainer import FaceTrainer, evaluate_identification

__all__ = [
    "FaceDistiller",
    "FaceNet",
    "FaceTrainer",
    "add_face_config",
    "check_face_config",
    "evaluate_identification",
]
