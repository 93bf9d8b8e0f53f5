"""Running an exported detector as a deployment would: torch.jit.load or an ONNX Runtime
session, nothing from kd_det or Detectron2.

This file imports neither at all (and torch only for TorchScript), so that a process
timing an export (kd_det/deploy/latency.py, run as a file) carries only what a
deployment of that format carries.
"""
__all__ = ["DEPLOY_EXTRA", "require_deploy_extra", "onnx_session", "load_exported"]

DEPLOY_EXTRA = "pip install -e .[deploy]"


def require_deploy_extra():
    """The onnx and onnxruntime modules, or an ImportError that names the extra."""
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ImportError(f"the onnx format needs onnx and onnxruntime ({e}); install "
                          f"kd_det's deploy extra: {DEPLOY_EXTRA}") from e
    return onnx, onnxruntime


def onnx_session(path: str, threads: int = 1):
    """An ONNX Runtime session on the CPU execution provider with `threads` intra-op
    threads; its run(None, {"image": array}) gives [boxes, scores, classes]."""
    _, ort = require_deploy_extra()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def load_exported(path: str, threads: int = 1):
    """A function image (3, H, W float32 tensor, 0..255) -> (boxes XYXY, scores, classes)
    of the file at `path`: .onnx through onnx_session, else TorchScript on torch's own
    threads."""
    import torch

    if path.endswith(".onnx"):
        session = onnx_session(path, threads)

        def run_onnx(image):
            out = session.run(None, {"image": image.numpy()})
            return tuple(torch.from_numpy(x) for x in out)
        return run_onnx

    import torchvision  # noqa: F401  (registers torchvision::nms and roi_align for the graph)

    module = torch.jit.load(path, map_location="cpu").eval()

    def run_torchscript(image):
        with torch.no_grad():
            return tuple(module(image))
    return run_torchscript
