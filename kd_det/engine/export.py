"""Student-only export: a plain GeneralizedRCNN checkpoint and config for vanilla Detectron2."""
import os
from typing import Dict

import torch
from detectron2.config import CfgNode

from ..checkpoint import safe_torch_load
from ..file_io import atomic_torch_save

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

    MODEL.MOBILENET.* (present when the config was read with ``add_mobilenet_config``) is
    dropped too unless the student uses that backbone; then, as for any Detectron2 project
    backbone, reading the export needs ``import kd_det`` and ``add_mobilenet_config``.
    """
    out = cfg.clone()
    out.defrost()
    out.MODEL.META_ARCHITECTURE = cfg.KD.STUDENT_META_ARCHITECTURE
    out.MODEL.WEIGHTS = weights
    del out["KD"]
    if "MOBILENET" in out.MODEL and "mobilenet" not in out.MODEL.BACKBONE.NAME:
        del out.MODEL["MOBILENET"]
    return out


def _check_matches(cfg: CfgNode, state: Dict[str, torch.Tensor], checkpoint_path: str):
    """The student that `cfg` describes must take exactly these weights: an export whose
    YAML does not fit its weights would load with a random head and only a warning."""
    from detectron2.modeling import build_model

    from ..modeling.backbone import skip_imagenet_init

    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    skip_imagenet_init(cfg)
    model = build_model(cfg)
    ours = model.state_dict()
    missing = sorted(set(ours) - set(state))
    unexpected = sorted(set(state) - set(ours))
    shapes = sorted(k for k in set(ours) & set(state) if ours[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        raise ValueError(
            f"{checkpoint_path} does not match the student of the given config: missing "
            f"{missing[:5]}, unexpected {unexpected[:5]}, other shapes {shapes[:5]}; pass the "
            "--config-file the checkpoint was trained with.")


def export_student(cfg: CfgNode, checkpoint_path: str, output_dir: str,
                   name: str = "student_final", overwrite: bool = True) -> Dict[str, str]:
    """Write `<name>.pth` ({"model": GeneralizedRCNN weights}) and `<name>.yaml`, after
    checking that the config's student takes exactly these weights. With
    overwrite=False an existing export is refused instead of replaced."""
    weights = os.path.join(output_dir, f"{name}.pth")
    config = os.path.join(output_dir, f"{name}.yaml")
    if not overwrite and (os.path.exists(weights) or os.path.exists(config)):
        raise FileExistsError(f"{weights} or {config} exists already; choose another --output "
                              "or pass --overwrite.")
    ckpt = safe_torch_load(checkpoint_path)
    state = student_state_dict(ckpt.get("model", ckpt))
    student_cfg = student_config(cfg, weights)
    _check_matches(student_cfg, state, checkpoint_path)
    os.makedirs(output_dir, exist_ok=True)
    atomic_torch_save({"model": state, "__author__": "kd_det"}, weights)
    with open(config + ".tmp", "w") as f:
        f.write(student_cfg.dump())
    os.replace(config + ".tmp", config)
    return {"weights": weights, "config": config}
