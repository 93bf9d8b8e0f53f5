"""Pieces a LazyConfig KD run needs beyond Detectron2's own (tools/lazyconfig_train_net.py)."""
import copy
from typing import Dict, Optional

from detectron2.config import CfgNode, instantiate
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.solver.build import maybe_add_gradient_clipping

__all__ = ["with_gradient_clipping", "lazy_test", "build_optimizer"]


def with_gradient_clipping(optimizer, clip_type: str = "norm", clip_value: float = 1.0,
                           norm_type: float = 2.0):
    """The yacs SOLVER.CLIP_GRADIENTS for a LazyConfig optimizer: Detectron2's own
    maybe_add_gradient_clipping (per-parameter clipping before each step) from keywords."""
    clip = {"ENABLED": True, "CLIP_TYPE": clip_type, "CLIP_VALUE": clip_value,
            "NORM_TYPE": norm_type}
    return maybe_add_gradient_clipping(CfgNode({"SOLVER": {"CLIP_GRADIENTS": clip}}), optimizer)


def build_optimizer(optimizer_cfg, model):
    """Detectron2's `cfg.optimizer.params.model = model; instantiate(cfg.optimizer)` on a
    copy (the config stays serialisable for the export), through wrappers such as
    with_gradient_clipping whose `optimizer` holds the params."""
    optimizer_cfg = copy.deepcopy(optimizer_cfg)
    node = optimizer_cfg
    while "params" not in node:
        node = node.optimizer
    node.params.model = model
    return instantiate(optimizer_cfg)


def lazy_test(cfg, model, output_dir: Optional[str] = None) -> Dict:
    """Detectron2's do_test: `model` on cfg.dataloader.test with cfg.dataloader.evaluator
    ({} without an evaluator). `output_dir` replaces the evaluator's when given (the
    teacher's results go apart from the student's)."""
    if "evaluator" not in cfg.dataloader:
        return {}
    evaluator_cfg = copy.deepcopy(cfg.dataloader.evaluator)
    if output_dir is not None:
        evaluator_cfg.output_dir = output_dir
    ret = inference_on_dataset(model, instantiate(cfg.dataloader.test),
                               instantiate(evaluator_cfg))
    print_csv_format(ret)
    return ret
