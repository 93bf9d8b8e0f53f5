"""Student-only export: a plain GeneralizedRCNN checkpoint and config for vanilla Detectron2."""
import os
from typing import Dict

import torch
from detectron2.config import CfgNode

from ..checkpoint import safe_torch_load
from ..utils.reporting import atomic_torch_save

__all__ = ["student_state_dict", "student_config", "export_student"]

_PREFIX = "student."


def student_state_dict(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """GeneralizedRCNN keys from a DistillRCNN state dict (adapters dropped)."""
    if not any(k.startswith(_PREFIX) for k in state):
        raise ValueError("the checkpoint holds no 'student.*' weights: it is not a DistillRCNN "
                         "training checkpoint (a plain GeneralizedRCNN needs no export).")
    return {k[len(_PREFIX):]: v for k, v in state.items() if k.startswith(_PREFIX)}


def student_config(cfg: CfgNode, weights: str = "") -> CfgNode:
    """The student's own config: KD.* removed, the student meta-architecture restored.

    kd_det's MobileNet keys are dropped too unless the student uses that backbone (then
    `import kd_det` is needed to build it, as for any Detectron2 project backbone).
    """
    out = cfg.clone()
    out.defrost()
    out.MODEL.META_ARCHITECTURE = cfg.KD.STUDENT_META_ARCHITECTURE
    out.MODEL.WEIGHTS = weights
    del out["KD"]
    if "MOBILENET" in out.MODEL and "mobilenet" not in out.MODEL.BACKBONE.NAME:
        del out.MODEL["MOBILENET"]
    return out


def export_student(cfg: CfgNode, checkpoint_path: str, output_dir: str,
                   name: str = "student_final") -> Dict[str, str]:
    """Write `<name>.pth` ({"model": GeneralizedRCNN weights}) and `<name>.yaml`."""
    ckpt = safe_torch_load(checkpoint_path)
    state = ckpt.get("model", ckpt)
    os.makedirs(output_dir, exist_ok=True)
    weights = os.path.join(output_dir, f"{name}.pth")
    config = os.path.join(output_dir, f"{name}.yaml")
    atomic_torch_save({"model": student_state_dict(state), "__author__": "kd_det"}, weights)
    with open(config + ".tmp", "w") as f:
        f.write(student_config(cfg, weights).dump())
    os.replace(config + ".tmp", config)
    return {"weights": weights, "config": config}
