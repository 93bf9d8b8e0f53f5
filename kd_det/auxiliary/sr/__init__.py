"""Super-resolution distillation with privileged information (PISR) and VID.

Step 1 trains a teacher whose encoder sees the HR image; step 2 starts an FSRCNN student
from the teacher's decoder and distils the teacher's features into it with VID.
"""
from .config import add_sr_config, check_sr_config
from .distiller import PISRDistiller
from .models import FSRCNN, PISRTeacher, SRBaseline, VIDHead
from .modes import SR_MODE_REGISTRY
from .trainer import SRTrainer

__all__ = [
    "SR_MODE_REGISTRY",
    "FSRCNN",
    "PISRDistiller",
    "PISRTeacher",
    "SRBaseline",
    "SRTrainer",
    "VIDHead",
    "add_sr_config",
    "check_sr_config",
]
