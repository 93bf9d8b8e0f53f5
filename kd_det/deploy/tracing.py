"""Tracing a GeneralizedRCNN into an image -> (boxes, scores, classes) graph with
Detectron2's TracingAdapter, as its tools/deploy/export_model.py does."""
import warnings

import torch
from detectron2.export import TracingAdapter

__all__ = ["boxes_scores_classes", "trace_detector"]


def boxes_scores_classes(model, inputs):
    """GeneralizedRCNN inference without the resize back to the original image: the
    exported graph then answers in its input's pixels, which the caller resized."""
    instances = model.inference(inputs, do_postprocess=False)[0]
    return instances.pred_boxes.tensor, instances.scores, instances.pred_classes


def trace_detector(model: torch.nn.Module, image: torch.Tensor) -> torch.jit.ScriptModule:
    """The traced graph of `model` on `image` (3, H, W float); it generalises to other
    sizes, which --check verifies on the given images."""
    adapter = TracingAdapter(model, [{"image": image}], boxes_scores_classes)
    try:
        # Detectron2's shape asserts and empty-box branches warn that they become constants;
        # whether the graph generalises is what the parity check on other images tells.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return torch.jit.trace(adapter, adapter.flattened_inputs, check_trace=False)
    except Exception as e:
        raise RuntimeError(f"{type(model).__name__} could not be traced: {e}") from e
