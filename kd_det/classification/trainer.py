"""ClsTrainer: the shared AuxTrainer engine for teachers, students and every KD method."""
import logging
from typing import Dict

import torch
from detectron2.engine import HookBase
from detectron2.evaluation import inference_context

from kd_det.engine.aux_trainer import (
    AUX_TRAINER_REGISTRY,
    AuxTrainer,
    build_infinite_loader,
    load_aux_teacher,
)

from .config import add_cls_kd_config, check_cls_config, check_disc_hidden
from .data import load_split
from .distiller import ClsDistiller
from .models import Discriminator, build_classifier, build_regressor

__all__ = ["ClsTrainer", "FitNetsStageHook", "evaluate_top1", "load_teacher"]

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


class FitNetsStageHook(HookBase):
    """Stage 1 (hint only) for the first CLS.FITNETS.STAGE1_ITERS iterations, then stage 2;
    derived from the iteration, so a resumed run lands in the right stage."""

    def __init__(self, stage1_iters: int):
        self.stage1_iters = stage1_iters

    def before_step(self):
        stage = 1 if self.trainer.iter < self.stage1_iters else 2
        if stage != self.trainer.model.stage:
            logger.info("FitNets stage %d from iteration %d", stage, self.trainer.iter)
            self.trainer.model.stage = stage


@AUX_TRAINER_REGISTRY.register()
class ClsTrainer(AuxTrainer):
    """CLS.METHOD: "none" (CE alone), "kd", "fitnets", "fnkd" or "meal_v2"."""

    @classmethod
    def add_config(cls, cfg) -> None:
        add_cls_kd_config(cfg)

    @classmethod
    def check_config(cls, cfg) -> None:
        check_cls_config(cfg)

    @classmethod
    def build_model(cls, cfg) -> ClsDistiller:
        c = cfg.CLS
        student = build_classifier(c.MODEL, c.NUM_CLASSES)
        teachers = [load_teacher(cfg, w) for w in c.TEACHER.WEIGHTS]
        regressor = discriminator = None
        if c.METHOD == "fitnets":
            regressor = build_regressor(c.MODEL.WIDTHS[c.FITNETS.GUIDED_STAGE],
                                        c.TEACHER.WIDTHS[c.FITNETS.HINT_STAGE])
        if c.METHOD == "meal_v2":
            discriminator = Discriminator(c.NUM_CLASSES, check_disc_hidden(cfg))
        return ClsDistiller(
            c.METHOD, student, teachers,
            temperature=c.KD.TEMPERATURE, alpha_hard=c.KD.ALPHA_HARD, alpha_soft=c.KD.ALPHA_SOFT,
            regressor=regressor, guided_stage=c.FITNETS.GUIDED_STAGE,
            hint_stage=c.FITNETS.HINT_STAGE, hint_weight=c.FITNETS.HINT_WEIGHT,
            hint_normalize=c.FITNETS.HINT_NORMALIZE, fnkd_form=c.FNKD.FORM,
            fnkd_tau=c.FNKD.TAU, fnkd_weight=c.FNKD.WEIGHT,
            discriminator=discriminator, disc_weight=c.MEAL.DISC_WEIGHT)

    @classmethod
    def build_optimizer(cls, cfg, model) -> torch.optim.Optimizer:
        """One optimizer; MEAL V2's discriminator in its own group at CLS.MEAL.DISC_LR."""
        optimizer = super().build_optimizer(cfg, model)
        if model.discriminator is not None:
            disc = {id(p) for p in model.discriminator.parameters()}
            group = optimizer.param_groups[0]
            group["params"] = [p for p in group["params"] if id(p) not in disc]
            optimizer.add_param_group({"params": list(model.discriminator.parameters()),
                                       "lr": cfg.CLS.MEAL.DISC_LR})
        return optimizer

    @classmethod
    def build_train_loader(cls, cfg):
        dataset = load_split(cfg, "train")
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

    def build_hooks(self):
        ret = super().build_hooks()
        if self.cfg.CLS.METHOD == "fitnets":
            ret.insert(0, FitNetsStageHook(self.cfg.CLS.FITNETS.STAGE1_ITERS))
        return ret
