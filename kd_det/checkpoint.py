"""Loading weights without running code from them.

Detectron2 unpickles `.pkl` checkpoints (its model-zoo format) with plain `pickle`, so a
crafted file runs code on load; `.pth` files go through `torch.load`, which torch >= 2.6
restricts to tensors and containers. :class:`SafeDetectionCheckpointer` reads `.pkl` with
an unpickler that only rebuilds what model-zoo files hold (dicts, lists, numbers, strings,
numpy arrays) and refuses anything else, naming the file; it unpickles each file once, so
the file cannot be swapped between a check and the real read. :class:`SafeCheckpointer`
(fvcore's, for the auxiliary trainers) names the file that torch refuses.
"""
import pickle

import torch
from detectron2.checkpoint import DetectionCheckpointer
from fvcore.common.checkpoint import Checkpointer

__all__ = ["SafeCheckpointer", "SafeDetectionCheckpointer", "safe_torch_load", "safe_pickle_load"]

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
    """torch.load of tensors and containers only (no code from the file runs); a refusal
    or an unreadable file is an error naming `path`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        lines = [x.strip() for x in str(e).splitlines() if x.strip()]
        blocked = [x for x in lines if "GLOBAL" in x]
        if blocked:
            raise ValueError(
                f"{path} holds objects other than tensors and containers ({blocked[0]}); it "
                "was not loaded, because unpickling it could run code. Give a checkpoint "
                "of tensors, as kd_det and Detectron2 save them.") from e
        raise ValueError(f"{path} is not a readable torch checkpoint ({lines[0] if lines else e!r}"
                         "): it is truncated or of another format.") from e


class SafeCheckpointer(Checkpointer):
    """fvcore's Checkpointer whose refusal of a file holding code names the file, where
    torch says only "Weights only load failed"."""

    def _load_file(self, f):
        return safe_torch_load(f)


class SafeDetectionCheckpointer(DetectionCheckpointer, SafeCheckpointer):
    """DetectionCheckpointer whose `.pkl` (model-zoo) loading cannot run code: the file is
    unpickled once, with the restricted unpickler, which refuses anything but arrays
    (`.pth` files load with weights_only, through SafeCheckpointer)."""

    def _load_model(self, checkpoint):
        # DistillRCNN takes plain GeneralizedRCNN weights for its student; rename them
        # before Detectron2 compares shapes, so that a mismatched head is skipped with a
        # warning as in plain Detectron2 instead of failing in load_state_dict.
        remap = getattr(self.model, "plain_to_student_keys", None)
        if remap is not None and not checkpoint.get("matching_heuristics", False):
            remap(checkpoint["model"])
        return super()._load_model(checkpoint)

    def _load_file(self, filename):
        if not filename.endswith(".pkl"):
            return super()._load_file(filename)
        # Detectron2 would unpickle the file with plain pickle; what the restricted read
        # gives is put in the shape Detectron2 gives its two .pkl formats instead.
        with self.path_manager.open(filename, "rb") as f:
            data = safe_pickle_load(f, filename)
        if not isinstance(data, dict):
            raise ValueError(f"{filename} holds a {type(data).__name__}, not a dict of weights")
        if "model" in data and "__author__" in data:  # Detectron2's model zoo
            return data
        blobs = data.get("blobs", data)  # Caffe2 / Detectron1 model zoo
        return {"model": {k: v for k, v in blobs.items() if not k.endswith("_momentum")},
                "__author__": "Caffe2", "matching_heuristics": True}
