"""SRTrainer: the shared AuxTrainer engine for the PISR teacher, student and baseline."""
import json
import logging
import os
from typing import Dict, List, Tuple

import torch
from detectron2.engine import HookBase, hooks
from detectron2.evaluation import inference_context

from kd_det.auxiliary.trainer import AUX_TRAINER_REGISTRY, AuxTrainer, build_infinite_loader
from kd_det.file_io import save_json
from kd_det.modeling.diagnostics import grad_norms, term_name

from .config import add_sr_config, check_sr_config, train_val_files
from .data import SRPatchDataset, load_test_set, load_val_set
from .metrics import psnr, ssim
from .modes import SR_MODE_REGISTRY

__all__ = ["SRTrainer", "ValCurveHook", "evaluate_bicubic", "evaluation_sets",
           "loss_diagnostics", "test_set_names"]

logger = logging.getLogger(__name__)


def test_set_names(cfg):
    """Result names of SR.DATA.TEST_DIRS ("CSet5" -> "Set5" unless TEST_NAMES says)."""
    if cfg.SR.DATA.TEST_NAMES:
        return list(cfg.SR.DATA.TEST_NAMES)
    names = [os.path.basename(os.path.normpath(d)) for d in cfg.SR.DATA.TEST_DIRS]
    return [n[1:] if n.startswith("CSet") else n for n in names]


def load_val(cfg) -> List[Dict]:
    """The validation crops (SR.DATA.VAL_EVERY, VAL_CROP); empty without a split."""
    return load_val_set(train_val_files(cfg)[1], cfg.SR.SCALE, cfg.SR.DATA.VAL_CROP)


def evaluation_sets(cfg) -> List[Tuple[str, List[Dict]]]:
    """("val", crops) when there is a validation split, then (name, images) per test set."""
    val = [("val", load_val(cfg))] if cfg.SR.DATA.VAL_EVERY else []
    return val + [(name, load_test_set(folder, cfg.SR.SCALE))
                  for name, folder in zip(test_set_names(cfg), cfg.SR.DATA.TEST_DIRS)]


def _mean_metrics(pairs, border: int, with_ssim: bool = True) -> Dict[str, float]:
    pairs = list(pairs)
    out = {"psnr": sum(psnr(sr, hr, border) for sr, hr in pairs) / len(pairs)}
    if with_ssim:
        out["ssim"] = sum(ssim(sr, hr, border) for sr, hr in pairs) / len(pairs)
    return out


@torch.no_grad()
def _model_metrics(model, images: List[Dict], scale: int, with_ssim: bool = True):
    device = next(model.parameters()).device
    pairs = []
    with inference_context(model):
        for im in images:
            batch = {"lr": im["lr"][None].to(device), "hr": im["hr"][None].to(device)}
            pairs.append((model(batch)[0].cpu(), im["hr"]))
    return _mean_metrics(pairs, scale, with_ssim)


def evaluate_bicubic(cfg) -> Dict[str, float]:
    """The bicubic-upscaling row, with the same sets and metric as the models."""
    return {f"{name}/{k}": v for name, images in evaluation_sets(cfg)
            for k, v in _mean_metrics(((im["bicubic"], im["hr"]) for im in images),
                                      cfg.SR.SCALE).items()}


def loss_diagnostics(model, images: List[Dict]) -> Dict[str, float]:
    """Each training loss of `model` on `images` (mean over the images) and the L2 norm of
    its gradient on the SR network's parameters (model.sr_network()): how hard each term
    pulls on the weights that make the SR image. No .grad is touched."""
    device = next(model.parameters()).device
    was_training = model.training
    model.train()
    losses: Dict[str, torch.Tensor] = {}
    with torch.enable_grad():
        for im in images:
            out = model({"lr": im["lr"][None].to(device), "hr": im["hr"][None].to(device)})
            for k, v in out.items():
                losses[k] = losses.get(k, 0) + v / len(images)
        params = [p for p in model.sr_network().parameters() if p.requires_grad]
        norms = grad_norms(losses, params)
    model.train(was_training)
    return {**{f"term/{term_name(k)}": float(v.detach()) for k, v in losses.items()},
            **{f"grad_norm/{term_name(k)}": v for k, v in norms.items()}}


class ValCurveHook(HookBase):
    """The learning curve: validation PSNR, and each loss with its gradient norm on the
    validation crops (loss_diagnostics), before the first iteration, every `period` and
    after the last, appended to OUTPUT_DIR/val_curve.json (a resumed run keeps its earlier
    points). The point at iteration 0 is where a run starts: bicubic-like for a fresh
    FSRCNN, the teacher's decoder on real LR for a PISR student."""

    def __init__(self, period: int, images: List[Dict], scale: int, output_dir: str):
        self._period = period
        self._images = images
        self._scale = scale
        self._path = os.path.join(output_dir, "val_curve.json")
        self.points: List[Dict] = []

    def before_train(self):
        if os.path.isfile(self._path):
            with open(self._path) as f:
                self.points = [p for p in json.load(f) if p["iter"] <= self.trainer.iter]
        if self.trainer.iter == 0 and not self.points:
            self._record(0)

    def after_step(self):
        done = self.trainer.iter + 1
        if (self._period and done % self._period == 0) or done == self.trainer.max_iter:
            self._record(done)

    def _record(self, it: int) -> None:
        model = self.trainer.model
        point = {"iter": it,
                 "val/psnr": _model_metrics(model, self._images, self._scale, False)["psnr"],
                 **loss_diagnostics(model, self._images)}
        self.points.append(point)
        save_json(self._path, self.points)
        logger.info("iter %d: %s", it, ", ".join(f"{k} {v:.4g}" for k, v in point.items()
                                                  if k != "iter"))


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
        dataset = SRPatchDataset(train_val_files(cfg)[0], cfg.SR.SCALE, cfg.SR.DATA.PATCH_SIZE,
                                 cfg.SR.DATA.PATCHES_PER_IMAGE)
        return build_infinite_loader(dataset, cfg.DATALOADER.BATCH_SIZE, cfg.SEED,
                                     num_workers=cfg.DATALOADER.NUM_WORKERS)

    def build_hooks(self):
        """The shared hooks, with the validation curve (SR.DATA.VAL_EVERY) before the final
        evaluation, out of the iteration timer's span."""
        ret = super().build_hooks()
        if self.cfg.SR.DATA.VAL_EVERY:
            self.val_curve = ValCurveHook(self.cfg.SR.VAL_PERIOD, load_val(self.cfg),
                                          self.cfg.SR.SCALE, self.cfg.OUTPUT_DIR)
            at = next(i for i, h in enumerate(ret) if isinstance(h, hooks.EvalHook))
            ret.insert(at, self.val_curve)
        return ret

    def train(self) -> Dict:
        """The final evaluation (test), with the validation curve under "curve"."""
        results = super().train()
        if self.cfg.SR.DATA.VAL_EVERY:
            results = {**results, "curve": self.val_curve.points}
        return results

    @classmethod
    def test(cls, cfg, model) -> Dict[str, float]:
        """Mean PSNR/SSIM per set (validation crops, then each test set), Y channel,
        SR.SCALE pixels shaved."""
        out = {f"{name}/{k}": v for name, images in evaluation_sets(cfg)
               for k, v in _model_metrics(model, images, cfg.SR.SCALE).items()}
        logger.info("SR x%d %s: %s", cfg.SR.SCALE, cfg.SR.MODE,
                    ", ".join(f"{k} {v:.4f}" for k, v in out.items()))
        return out
