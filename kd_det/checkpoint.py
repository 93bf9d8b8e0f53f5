"""Loading weights without running code from them.

Detectron2 unpickles `.pkl` checkpoints (its model-zoo format) with plain `pickle`, so a
crafted file runs code on load; `.pth` files go through `torch.load`, which torch >= 2.6
restricts to tensors and containers. :class:`SafeDetectionCheckpointer` reads `.pkl` with
an unpickler that only rebuilds what model-zoo files hold (dicts, lists, numbers, strings,
numpy arrays) and refuses anything else, naming the file.
"""
import pickle

import torch
from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["SafeDetectionCheckpointer", "safe_torch_load", "safe_pickle_load"]

# What Detectron2 / Caffe2 model-zoo .pkl files need to be rebuilt: numpy arrays.
_ALLOWED = {
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to unpickle {module}.{name}: a weights file holds only arrays")
        return super().find_class(module, name)


def safe_pickle_load(f, source: str):
    """pickle.load restricted to model-zoo content; `source` names the file in errors."""
    try:
        return _RestrictedUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise ValueError(f"{source} is not a plain weights file ({e}); it was not loaded, "
                         "because unpickling it could run code.") from e


def safe_torch_load(path: str):
    """torch.load of tensors and containers only (no code from the file runs)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path} holds objects other than tensors and containers ({e}); "
                         "it was not loaded, because unpickling it could run code.") from e


class SafeDetectionCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer whose `.pkl` (model-zoo) loading cannot run code: the file is
    first read with the restricted unpickler, which refuses anything but arrays, and only
    then handed to Detectron2's loader (`.pth` files already load with weights_only)."""

    def _load_model(self, checkpoint):
        # DistillRCNN takes plain GeneralizedRCNN weights for its student; rename them
        # before Detectron2 compares shapes, so that a mismatched head is skipped with a
        # warning as in plain Detectron2 instead of failing in load_state_dict.
        remap = getattr(self.model, "plain_to_student_keys", None)
        if remap is not None and not checkpoint.get("matching_heuristics", False):
            remap(checkpoint["model"])
        return super()._load_model(checkpoint)

    def _load_file(self, filename):
        if filename.endswith(".pkl"):
            with self.path_manager.open(filename, "rb") as f:
                safe_pickle_load(f, filename)
        return super()._load_file(filename)
