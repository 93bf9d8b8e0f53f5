"""ClsTrainer: the shared AuxTrainer engine for teachers, students and every KD method."""
import logging
from typing import Dict

import torch
from detectron2.engine import HookBase, hooks
from detectron2.evaluation import inference_context

from kd_det.auxiliary.trainer import (
    AUX_TRAINER_REGISTRY,
    AuxTrainer,
    build_infinite_loader,
    load_aux_teacher,
)

from .config import add_cls_kd_config, check_cls_config
from .data import load_split
from .distiller import ClsDistiller
from .methods import build_cls_method
from .models import build_classifier

__all__ = ["ClsTrainer", "ValCurveHook", "evaluate_top1", "load_teacher"]

logger = logging.getLogger(__name__)


def load_teacher(cfg, path: str, key: str = "CLS.TEACHER.WEIGHTS"):
    """A CLS.TEACHER network with the weights of a CLS.METHOD none run (under "student.")."""
    return load_aux_teacher(build_classifier(cfg.CLS.TEACHER, cfg.CLS.NUM_CLASSES), path, key,
                            "fc.weight", cfg.CLS.NUM_CLASSES, "CLS.NUM_CLASSES", "classes")


@torch.no_grad()
def evaluate_top1(model, dataset, batch_size: int = 1000) -> float:
    """Top-1 accuracy (%) of `model` (images -> logits) on a TensorDataset."""
    device = next(model.parameters()).device
    images, labels = dataset.tensors
    correct = 0
    with inference_context(model):
        for i in range(0, len(images), batch_size):
            logits = model((images[i:i + batch_size].to(device), None))
            correct += (logits.argmax(1).cpu() == labels[i:i + batch_size]).sum().item()
    return 100.0 * correct / len(images)


class ValCurveHook(HookBase):
    """Every `period` iterations, the student's val top-1 as "val/top1" in the event storage
    (hence metrics.json): the learning curve. The last iteration is left to the final
    evaluation, which logs the same key."""

    def __init__(self, period: int, val_set):
        self._period = period
        self._val = val_set

    def after_step(self):
        done = self.trainer.iter + 1
        if done % self._period == 0 and done < self.trainer.max_iter:
            self.trainer.storage.put_scalar(
                "val/top1", evaluate_top1(self.trainer.model, self._val), smoothing_hint=False)


@AUX_TRAINER_REGISTRY.register()
class ClsTrainer(AuxTrainer):
    """Teachers, students and every method of CLS_METHOD_REGISTRY (CLS.METHOD)."""

    add_config = staticmethod(add_cls_kd_config)
    check_config = staticmethod(check_cls_config)

    @classmethod
    def build_model(cls, cfg) -> ClsDistiller:
        c = cfg.CLS
        method = build_cls_method(cfg)
        student = build_classifier(c.MODEL, c.NUM_CLASSES)
        teachers = [load_teacher(cfg, w) for w in c.TEACHER.WEIGHTS]
        return ClsDistiller(student, method, teachers, diagnostics_period=c.CURVE_PERIOD)

    @classmethod
    def build_optimizer(cls, cfg, model) -> torch.optim.Optimizer:
        """One optimizer; a method's module in its own group when it asks for its own
        learning rate (MEAL V2's discriminator at CLS.MEAL.DISC_LR)."""
        optimizer = super().build_optimizer(cfg, model)
        lr = model.method.module_lr()
        if model.method_module is not None and lr is not None:
            own = {id(p) for p in model.method_module.parameters()}
            group = optimizer.param_groups[0]
            group["params"] = [p for p in group["params"] if id(p) not in own]
            optimizer.add_param_group({"params": list(model.method_module.parameters()),
                                       "lr": lr})
        return optimizer

    def build_hooks(self):
        """The shared hooks, with the val curve (CLS.CURVE_PERIOD) logged before the final
        evaluation and the writers."""
        ret = super().build_hooks()
        if self.cfg.CLS.CURVE_PERIOD:
            at = next(i for i, h in enumerate(ret) if isinstance(h, hooks.EvalHook))
            ret.insert(at, ValCurveHook(self.cfg.CLS.CURVE_PERIOD, load_split(self.cfg, "val")))
        return ret

    @classmethod
    def build_train_loader(cls, cfg):
        dataset = load_split(cfg, "train")
        load_split(cfg, "test")  # read and checked now, not after the last step
        logger.info("Fashion-MNIST: %d training images", len(dataset))
        return build_infinite_loader(dataset, cfg.DATALOADER.BATCH_SIZE, cfg.SEED,
                                     num_workers=cfg.DATALOADER.NUM_WORKERS)

    @classmethod
    def test(cls, cfg, model) -> Dict[str, float]:
        """Top-1 (%) on the held-out validation split and on the official test set."""
        out = {f"{split}/top1": evaluate_top1(model, load_split(cfg, split))
               for split in ("val", "test") if split == "test" or cfg.CLS.DATA.VAL_SIZE}
        logger.info("%s: %s", cfg.CLS.METHOD, ", ".join(f"{k} {v:.2f}" for k, v in out.items()))
        return out
