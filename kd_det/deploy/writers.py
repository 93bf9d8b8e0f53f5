"""Writing a traced detector as TorchScript or as ONNX (through torch's TorchScript-based
ONNX exporter, which takes the traced graph as it is)."""
import torch

from .runtime import require_deploy_extra

__all__ = ["FORMATS", "write_torchscript", "write_onnx"]

FORMATS = {"torchscript": ".ts", "onnx": ".onnx"}
# At least 16: the first opset whose RoiAlign has the half-pixel alignment of Detectron2's
# ROIAlign (Detectron2's own STABLE_ONNX_OPSET_VERSION, 11, approximates it).
ONNX_OPSET = 17


def write_torchscript(traced: torch.jit.ScriptModule, image: torch.Tensor, path: str) -> None:
    torch.jit.save(traced, path)


def write_onnx(traced: torch.jit.ScriptModule, image: torch.Tensor, path: str) -> None:
    """One image of any size in, a variable number of detections out; checked by onnx."""
    onnx, _ = require_deploy_extra()
    n = {0: "detections"}
    torch.onnx.export(traced, (image,), path, dynamo=False, opset_version=ONNX_OPSET,
                      input_names=["image"], output_names=["boxes", "scores", "classes"],
                      dynamic_axes={"image": {1: "height", 2: "width"},
                                    "boxes": n, "scores": n, "classes": n})
    onnx.checker.check_model(path)


WRITERS = {"torchscript": write_torchscript, "onnx": write_onnx}
