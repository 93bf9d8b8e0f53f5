"""Student-only export: a plain GeneralizedRCNN checkpoint and config for vanilla Detectron2."""
import copy
import math
import os
from typing import Callable, Dict, Tuple

import torch
from detectron2.config import CfgNode

from ..checkpoint import safe_torch_load
from ..file_io import atomic_torch_save, check_writable

__all__ = ["student_state_dict", "student_config", "export_student", "export_lazy_student"]

_PREFIX = "student."


def student_state_dict(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """GeneralizedRCNN keys from a DistillRCNN state dict (adapters dropped)."""
    if not any(k.startswith(_PREFIX) for k in state):
        raise ValueError("the checkpoint holds no 'student.*' weights: it is not a DistillRCNN "
                         "training checkpoint (a plain GeneralizedRCNN needs no export).")
    return {k[len(_PREFIX):]: v for k, v in state.items() if k.startswith(_PREFIX)}


def student_config(cfg: CfgNode, weights: str = "") -> CfgNode:
    """The student's own config: KD.* removed, the student meta-architecture restored,
    INPUT.* sizes scaled by KD.STUDENT.INPUT_SCALE (the resolution the student learnt at).

    MODEL.MOBILENET.* and MODEL.EFFICIENTNET.* (present when the config was read with
    ``add_mobilenet_config`` / ``add_efficientnet_config``) are dropped too unless the
    student uses that backbone; then, as for any Detectron2 project backbone, reading the
    export needs ``import kd_det`` and that function.
    """
    out = cfg.clone()
    out.defrost()
    scale = cfg.KD.STUDENT.INPUT_SCALE
    if scale != 1:  # INPUT.* were the teacher's sizes; the student ran at `scale` of them
        for key in ("MIN_SIZE_TRAIN", "MAX_SIZE_TRAIN", "MIN_SIZE_TEST", "MAX_SIZE_TEST"):
            v = out.INPUT[key]
            out.INPUT[key] = (tuple(math.ceil(x * scale) for x in v)
                              if isinstance(v, (list, tuple)) else math.ceil(v * scale))
    out.MODEL.META_ARCHITECTURE = cfg.KD.STUDENT_META_ARCHITECTURE
    out.MODEL.WEIGHTS = weights
    del out["KD"]
    for node, backbone in (("MOBILENET", "mobilenet"), ("EFFICIENTNET", "efficientnet")):
        if node in out.MODEL and backbone not in out.MODEL.BACKBONE.NAME:
            del out.MODEL[node]
    return out


def _check_matches(model: torch.nn.Module, state: Dict[str, torch.Tensor],
                   checkpoint_path: str) -> None:
    """The student the config describes must take exactly these weights: an export whose
    config does not fit its weights would load with a random head and only a warning."""
    ours = model.state_dict()
    missing = sorted(set(ours) - set(state))
    unexpected = sorted(set(state) - set(ours))
    shapes = sorted(k for k in set(ours) & set(state) if ours[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        raise ValueError(
            f"{checkpoint_path} does not match the student of the given config: missing "
            f"{missing[:5]}, unexpected {unexpected[:5]}, other shapes {shapes[:5]}; pass the "
            "--config-file the checkpoint was trained with.")


def _build_yacs_student(cfg: CfgNode) -> torch.nn.Module:
    from detectron2.modeling import build_model

    from ..modeling.backbone import skip_imagenet_init

    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    skip_imagenet_init(cfg)  # building must not read ImageNet weights for nothing
    return build_model(cfg)


def _export(checkpoint_path: str, output_dir: str, name: str, overwrite: bool, suffix: str,
            build: Callable[[str], Tuple[torch.nn.Module, Callable[[str], None]]]):
    """The steps both config systems share: refuse to overwrite unless asked, read the
    student's weights, check them against the model `build(weights_path)` gives, write the
    weights and (with the writer `build` also gives) the config, each atomically."""
    weights = os.path.join(output_dir, f"{name}.pth")
    config = os.path.join(output_dir, f"{name}{suffix}")
    if not overwrite and (os.path.exists(weights) or os.path.exists(config)):
        raise FileExistsError(f"{weights} or {config} exists already; choose another --output "
                              "or pass --overwrite.")
    check_writable(output_dir, "the export folder")
    ckpt = safe_torch_load(checkpoint_path)
    state = student_state_dict(ckpt.get("model", ckpt))
    model, write_config = build(weights)
    _check_matches(model, state, checkpoint_path)
    os.makedirs(output_dir, exist_ok=True)
    atomic_torch_save({"model": state, "__author__": "kd_det"}, weights)
    write_config(config + ".tmp")
    os.replace(config + ".tmp", config)
    return {"weights": weights, "config": config}


def export_student(cfg: CfgNode, checkpoint_path: str, output_dir: str,
                   name: str = "student_final", overwrite: bool = True) -> Dict[str, str]:
    """Write `<name>.pth` ({"model": GeneralizedRCNN weights}) and `<name>.yaml`, after
    checking that the config's student takes exactly these weights. With
    overwrite=False an existing export is refused instead of replaced."""

    def build(weights):
        student_cfg = student_config(cfg, weights)

        def write(path):
            with open(path, "w") as f:
                f.write(student_cfg.dump())
        return _build_yacs_student(student_cfg), write

    return _export(checkpoint_path, output_dir, name, overwrite, ".yaml", build)


def export_lazy_student(cfg, checkpoint_path: str, output_dir: str,
                        name: str = "student_final", overwrite: bool = True) -> Dict[str, str]:
    """export_student for a LazyConfig run: `<name>.yaml` is the run's LazyConfig with
    ``model`` the student alone and ``train.init_checkpoint`` its weights, in plain YAML
    (no Python tag: kd_det's safe loader and ``LazyConfig.load`` both read it)."""
    from detectron2.config import LazyConfig, instantiate

    from .lazy_yaml import plain_lazy_config, read_plain_yaml

    def build(weights):
        out = copy.deepcopy(cfg)
        _scale_lazy_test_resize(out, out.model.get("input_scale", 1.0))
        out.model = out.model.student
        out.train.init_checkpoint = weights
        out = plain_lazy_config(out)

        def write(path):
            LazyConfig.save(out, path)
            read_plain_yaml(path)  # what was written must read back as data
        return instantiate(out.model), write

    return _export(checkpoint_path, output_dir, name, overwrite, ".yaml", build)


def _scale_lazy_test_resize(cfg, scale: float) -> None:
    """The exported student's test resize at `scale` of the distiller's (model.input_scale
    < 1): ResizeShortestEdge's sizes in dataloader.test.mapper.augmentations scaled; any
    other layout is refused rather than exported at the wrong resolution."""
    if scale == 1:
        return
    augs = cfg.get("dataloader", {}).get("test", {}).get("mapper", {}).get("augmentations")
    resizes = [a for a in augs or [] if "short_edge_length" in a]
    if not resizes:
        raise ValueError("model.input_scale < 1, but dataloader.test.mapper.augmentations has "
                         "no ResizeShortestEdge to scale for the exported student; scale its "
                         "test resize by hand.")
    for a in resizes:
        v = a.short_edge_length
        a.short_edge_length = ([math.ceil(x * scale) for x in v]
                               if isinstance(v, (list, tuple)) else math.ceil(v * scale))
        if a.get("max_size"):
            a.max_size = math.ceil(a.max_size * scale)
