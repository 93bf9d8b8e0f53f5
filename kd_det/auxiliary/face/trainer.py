"""FaceTrainer: the shared AuxTrainer engine for face teachers, students and their KD."""
import logging
from typing import Dict

import torch
from detectron2.engine import hooks
from detectron2.evaluation import inference_context

from kd_det.auxiliary.trainer import (
    AUX_TRAINER_REGISTRY,
    AuxTrainer,
    build_infinite_loader,
    load_aux_teacher,
)
from kd_det.data import down_up
from kd_det.engine.hooks import EvalCurveHook

from .config import add_face_config, check_face_config
from .data import FaceBatches, build_degradation, load_split
from .distiller import FaceDistiller
from .models import FaceNet, build_face_net

__all__ = ["FaceTrainer", "evaluate_identification", "load_teacher", "probe_name"]

logger = logging.getLogger(__name__)


def probe_name(size: int) -> str:
    return "original" if size == 0 else f"{size}px"


def load_teacher(cfg, path: str, key: str = "FACE.TEACHER.WEIGHTS") -> FaceNet:
    """A FACE.TEACHER network with the weights of a FACE.METHOD none run (under "student.")."""
    return load_aux_teacher(build_face_net(cfg.FACE.TEACHER, cfg), path, key, "head.weight",
                            cfg.FACE.NUM_IDENTITIES, "FACE.NUM_IDENTITIES", "identities")


@torch.no_grad()
def evaluate_identification(model, cfg, split: str = "test") -> Dict[str, float]:
    """Rank-1 identification (%) per FACE.TEST.PROBE_SIZES: every face of `split` ("test"
    or "val"), downscaled to the probe size and resized back, takes the identity of its
    nearest (cosine) original-resolution training face. `model` maps {"image"} to
    normalised embeddings."""
    device = next(model.parameters()).device
    gallery, gallery_ids = load_split(cfg, "train").tensors
    probes, probe_ids = load_split(cfg, split).tensors
    out = {}
    with inference_context(model):
        g = model({"image": gallery.to(device)}).cpu()
        for size in cfg.FACE.TEST.PROBE_SIZES:
            p = model({"image": (probes if size == 0 else down_up(probes, size)).to(device)})
            pred = gallery_ids[(p.cpu() @ g.T).argmax(1)]
            out[f"rank1/{probe_name(size)}"] = 100.0 * (pred == probe_ids).sum().item() / len(pred)
    return out


@AUX_TRAINER_REGISTRY.register()
class FaceTrainer(AuxTrainer):
    """FACE.METHOD "none" (a teacher, or the student alone) or "kd"; FACE.LR.ENABLED
    trains on the LR-augmented set."""

    add_config = staticmethod(add_face_config)
    check_config = staticmethod(check_face_config)

    @classmethod
    def build_model(cls, cfg) -> FaceDistiller:
        f = cfg.FACE
        teacher = load_teacher(cfg, f.TEACHER.WEIGHTS) if f.METHOD == "kd" else None
        return FaceDistiller(
            build_face_net(f.MODEL, cfg), teacher, teacher_input=f.KD.TEACHER_INPUT,
            hard_weight=f.KD.HARD_WEIGHT, soft_weight=f.KD.SOFT_WEIGHT,
            feat_weight=f.KD.FEAT_WEIGHT, temperature=f.KD.TEMPERATURE,
            feature_loss=f.KD.FEATURE_LOSS, diagnostics_period=f.KD.DIAGNOSTICS_PERIOD)

    @classmethod
    def build_train_loader(cls, cfg):
        dataset = load_split(cfg, "train")
        if cfg.DATALOADER.BATCH_SIZE > len(dataset):
            raise ValueError(f"DATALOADER.BATCH_SIZE={cfg.DATALOADER.BATCH_SIZE} exceeds the "
                             f"{len(dataset)} training faces")
        logger.info("Olivetti: %d training faces, LR augmentation %s", len(dataset),
                    "on" if cfg.FACE.LR.ENABLED else "off")
        loader = build_infinite_loader(dataset, cfg.DATALOADER.BATCH_SIZE, cfg.SEED,
                                       num_workers=cfg.DATALOADER.NUM_WORKERS)
        return FaceBatches(loader, cfg.SEED, cfg.FACE.DATA.FLIP, build_degradation(cfg))

    def build_hooks(self):
        """The shared hooks, plus the validation curve (FACE.TEST.VAL_PERIOD, written to
        OUTPUT_DIR/curve.json and metrics.json) after the final evaluation."""
        ret = super().build_hooks()
        period = self.cfg.FACE.TEST.VAL_PERIOD
        if period:
            at = next(i for i, h in enumerate(ret) if isinstance(h, hooks.EvalHook)) + 1
            ret.insert(at, EvalCurveHook(
                period, lambda: {"val": evaluate_identification(self.model, self.cfg, "val")},
                self.cfg.OUTPUT_DIR))
        return ret

    @classmethod
    def test(cls, cfg, model) -> Dict[str, float]:
        """Rank-1 per probe on the test faces and, when there is a validation split, on it
        under "val/"."""
        out = evaluate_identification(model, cfg)
        if cfg.FACE.DATA.VAL_PER_IDENTITY:
            out.update({f"val/{k}": v for k, v in
                        evaluate_identification(model, cfg, "val").items()})
        logger.info("face %s: %s", cfg.FACE.METHOD,
                    ", ".join(f"{k} {v:.2f}" for k, v in out.items()))
        return out
