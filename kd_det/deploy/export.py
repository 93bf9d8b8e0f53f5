"""A self-contained detector file (TorchScript or ONNX) and its input contract, written
only once it exists whole and, with check images, gives the eager model's detections."""
import os
from typing import Dict, Sequence

import torch
from detectron2.config import CfgNode

from ..file_io import check_writable
from .contract import contract_path, input_contract, write_contract
from .images import image_files, load_model_input
from .parity import check_parity
from .runtime import load_exported, require_deploy_extra
from .student import deployable_model
from .tracing import boxes_scores_classes, trace_detector
from .writers import FORMATS, WRITERS

__all__ = ["export_deployable", "exported_paths"]


def exported_paths(output_dir: str, name: str, fmt: str) -> Dict[str, str]:
    model = os.path.join(output_dir, name + FORMATS[fmt])
    return {"model": model, "contract": contract_path(model)}


def _trace_image(cfg: CfgNode) -> torch.Tensor:
    """Noise at the test size, for a trace without check images (any size would do)."""
    side = min(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    return torch.rand(3, side, side, generator=torch.Generator().manual_seed(0)) * 255


def export_deployable(cfg: CfgNode, weights: str, output_dir: str, fmt: str,
                      check: Sequence[str] = (), overwrite: bool = False,
                      name: str = "student_final", config_name: str = "the config") -> Dict:
    """Write `<name>.ts` or `<name>.onnx` and `<name>.<ext>.json` (the input contract) in
    `output_dir`, from `cfg` + `weights` (see deployable_model). With `check` (images,
    folders or dataset names), the written file is loaded back as a deployment would load
    it and must give the eager detections on every image, else nothing is written."""
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: choose one of {sorted(FORMATS)} (or checkpoint)")
    if fmt == "onnx":
        require_deploy_extra()
    paths = exported_paths(output_dir, name, fmt)
    if not overwrite and any(os.path.exists(p) for p in paths.values()):
        raise FileExistsError(f"{paths['model']} or its contract exists already; choose "
                              "another --output or pass --overwrite.")
    check_writable(output_dir, "--output")
    model, model_cfg = deployable_model(cfg, weights, config_name)
    files = image_files(check) if check else []
    images = [load_model_input(f, model_cfg)[0] for f in files]
    sample = images[0] if images else _trace_image(model_cfg)
    traced = trace_detector(model, sample)

    os.makedirs(output_dir, exist_ok=True)
    partial = {k: os.path.join(output_dir, f".partial.{os.path.basename(p)}")
               for k, p in paths.items()}
    partial["contract"] = contract_path(partial["model"])
    try:
        WRITERS[fmt](traced, sample, partial["model"])
        contract = input_contract(model_cfg, fmt, os.path.basename(paths["model"]))
        if images:
            with torch.no_grad():
                contract["check"] = check_parity(
                    lambda im: boxes_scores_classes(model, [{"image": im}]),
                    load_exported(partial["model"], threads=torch.get_num_threads()),
                    images, files)
        write_contract(contract, partial["contract"])
        os.replace(partial["model"], paths["model"])
        os.replace(partial["contract"], paths["contract"])
    finally:
        for p in partial.values():
            if os.path.exists(p):
                os.remove(p)
    return {**paths, "contract_data": contract}
