"""SRTrainer: the shared AuxTrainer engine for the PISR teacher, student and baseline."""
import logging
import os
from typing import Dict

import torch
from detectron2.evaluation import inference_context

from kd_det.engine.aux_trainer import AUX_TRAINER_REGISTRY, AuxTrainer, build_infinite_loader

from .config import add_sr_config, check_sr_config
from .data import SRPatchDataset, load_test_set
from .metrics import psnr, ssim
from .modes import SR_MODE_REGISTRY

__all__ = ["SRTrainer", "evaluate_bicubic", "test_set_names"]

logger = logging.getLogger(__name__)


def test_set_names(cfg):
    """Result names of SR.DATA.TEST_DIRS ("CSet5" -> "Set5" unless TEST_NAMES says)."""
    if cfg.SR.DATA.TEST_NAMES:
        return list(cfg.SR.DATA.TEST_NAMES)
    names = [os.path.basename(os.path.normpath(d)) for d in cfg.SR.DATA.TEST_DIRS]
    return [n[1:] if n.startswith("CSet") else n for n in names]


def _mean_metrics(pairs, border: int) -> Dict[str, float]:
    pairs = list(pairs)
    return {
        "psnr": sum(psnr(sr, hr, border) for sr, hr in pairs) / len(pairs),
        "ssim": sum(ssim(sr, hr, border) for sr, hr in pairs) / len(pairs),
    }


def evaluate_bicubic(cfg) -> Dict[str, float]:
    """The bicubic-upscaling row, with the same test sets and metric as the models."""
    out = {}
    for name, folder in zip(test_set_names(cfg), cfg.SR.DATA.TEST_DIRS):
        images = load_test_set(folder, cfg.SR.SCALE)
        for k, v in _mean_metrics(((im["bicubic"], im["hr"]) for im in images),
                                  cfg.SR.SCALE).items():
            out[f"{name}/{k}"] = v
    return out


@AUX_TRAINER_REGISTRY.register()
class SRTrainer(AuxTrainer):
    """Every SR.MODE of SR_MODE_REGISTRY: "teacher" (PISR step 1), "student" (step 2) or
    "baseline" (FSRCNN, L1)."""

    add_config = staticmethod(add_sr_config)
    check_config = staticmethod(check_sr_config)

    @classmethod
    def build_model(cls, cfg) -> torch.nn.Module:
        return SR_MODE_REGISTRY.get(cfg.SR.MODE)(cfg)

    @classmethod
    def build_train_loader(cls, cfg):
        dataset = SRPatchDataset(cfg.SR.DATA.TRAIN_DIR, cfg.SR.SCALE, cfg.SR.DATA.PATCH_SIZE,
                                 cfg.SR.DATA.PATCHES_PER_IMAGE)
        return build_infinite_loader(dataset, cfg.DATALOADER.BATCH_SIZE, cfg.SEED,
                                     num_workers=cfg.DATALOADER.NUM_WORKERS)

    @classmethod
    def test(cls, cfg, model) -> Dict[str, float]:
        """Mean PSNR/SSIM per test set, Y channel, SR.SCALE pixels shaved."""
        device = next(model.parameters()).device
        out = {}
        with inference_context(model), torch.no_grad():
            for name, folder in zip(test_set_names(cfg), cfg.SR.DATA.TEST_DIRS):
                images = load_test_set(folder, cfg.SR.SCALE)
                pairs = []
                for im in images:
                    batch = {"lr": im["lr"][None].to(device), "hr": im["hr"][None].to(device)}
                    pairs.append((model(batch)[0].cpu(), im["hr"]))
                for k, v in _mean_metrics(pairs, cfg.SR.SCALE).items():
                    out[f"{name}/{k}"] = v
        logger.info("SR x%d %s: %s", cfg.SR.SCALE, cfg.SR.MODE,
                    ", ".join(f"{k} {v:.4f}" for k, v in out.items()))
        return out
