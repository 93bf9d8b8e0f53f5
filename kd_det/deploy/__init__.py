"""Deploying a detector (a distilled student, a teacher) as one TorchScript or ONNX file
that runs without kd_det or Detectron2, with its input contract beside it."""
from .contract import read_contract
from .export import export_deployable, exported_paths
from .parity import ParityError, check_parity, detection_differences
from .runtime import DEPLOY_EXTRA, load_exported, require_deploy_extra
from .student import deployable_model

__all__ = ["DEPLOY_EXTRA", "ParityError", "check_parity", "deployable_model",
           "detection_differences", "export_deployable", "exported_paths", "load_exported",
           "read_contract", "require_deploy_extra"]
