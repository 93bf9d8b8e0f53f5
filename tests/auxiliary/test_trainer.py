"""The shared engine of the auxiliary trainers trains, evaluates, checkpoints, resumes; the
shared config defaults; tools/train_aux.py runs the trainer a config names."""
import glob
import json
import os
import sys

import pytest
import torch
from torch import nn

from kd_det.auxiliary.trainer import AuxTrainer, build_infinite_loader, get_aux_cfg
from kd_det.modeling.frozen import DistillerBase, load_strict

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Regress(DistillerBase):
    def __init__(self):
        super().__init__()
        self.student = nn.Linear(3, 1)
        self.add_teacher("teacher", nn.Linear(3, 1))

    def forward(self, batch):
        x, y = batch
        return {"loss_mse": ((self.student(x) - y) ** 2).mean()}


class _Trainer(AuxTrainer):
    @classmethod
    def build_model(cls, cfg):
        return _Regress()

    @classmethod
    def build_train_loader(cls, cfg):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(256, 3, generator=g)
        y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
        return build_infinite_loader(torch.utils.data.TensorDataset(x, y), 32, cfg.SEED)

    @classmethod
    def test(cls, cfg, model):
        w = model.student.weight.detach()
        return {"weight_error": float((w - torch.tensor([[1.0, -2.0, 0.5]])).abs().sum())}


def _cfg(tmp_path, iters):
    cfg = get_aux_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.SOLVER.BASE_LR = 0.05
    cfg.SOLVER.MAX_ITER = iters
    cfg.SOLVER.CHECKPOINT_PERIOD = 50
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.STEPS = ()
    return cfg


def test_engine_learns_writes_metrics_and_keeps_teacher_out(tmp_path):
    trainer = _Trainer(_cfg(tmp_path, 100))
    before = trainer.model.teacher_params_snapshot()
    assert all(not k.startswith("teacher") for k in trainer.model.state_dict())
    results = trainer.train()
    assert results["weight_error"] < 0.05
    after = trainer.model.teacher_params_snapshot()
    assert all(torch.equal(before[k], after[k]) for k in before)
    lines = [json.loads(x) for x in open(os.path.join(tmp_path, "metrics.json"))]
    losses = [x["total_loss"] for x in lines if "total_loss" in x]
    assert len(losses) >= 4 and losses[-1] < losses[0]
    assert any("weight_error" in x for x in lines)
    assert os.path.isfile(os.path.join(tmp_path, "model_final.pth"))


def test_engine_resumes_from_last_checkpoint(tmp_path):
    cfg = _cfg(tmp_path, 50)
    _Trainer(cfg).train()
    cfg.SOLVER.MAX_ITER = 60
    trainer = _Trainer(cfg)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 50


def test_load_strict_rejects_missing_keys(tmp_path):
    path = os.path.join(tmp_path, "t.pth")
    torch.save({"model": {"weight": torch.zeros(1, 3)}}, path)
    with pytest.raises(ValueError, match="missing keys.*bias"):
        load_strict(nn.Linear(3, 1), path, key="KD.TEACHER.WEIGHTS")
    with pytest.raises(FileNotFoundError, match="KD.TEACHER.WEIGHTS"):
        load_strict(nn.Linear(3, 1), path + "x", key="KD.TEACHER.WEIGHTS")


def test_get_aux_cfg_holds_the_shared_short_schedule():
    cfg = get_aux_cfg()
    assert (cfg.SOLVER.OPTIMIZER, cfg.SOLVER.LR_SCHEDULER_NAME, cfg.SOLVER.BASE_LR) == (
        "SGD", "WarmupCosineLR", 0.05)
    assert cfg.TRAINER == "" and cfg.VERSION == 2


def test_train_aux_runs_the_trainer_its_config_names(olivetti_mat, tmp_path, one_thread):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import train_aux  # noqa: F401  (registers the auxiliary trainers)
    from detectron2.engine import default_argument_parser

    from kd_det.auxiliary.trainer import AUX_TRAINER_REGISTRY, aux_main, aux_trainer

    configs = glob.glob(os.path.join(ROOT, "configs", "*", "*.yaml"))
    named = {os.path.basename(os.path.dirname(p)): aux_trainer(p).__name__ for p in configs
             if os.path.basename(os.path.dirname(p)) in ("classification", "face", "sr")}
    assert named == {"classification": "ClsTrainer", "face": "FaceTrainer", "sr": "SRTrainer"}
    assert {"ClsTrainer", "FaceTrainer", "SRTrainer"} <= {k for k, _ in AUX_TRAINER_REGISTRY}
    face = os.path.join(ROOT, "configs", "face", "student.yaml")
    args = default_argument_parser().parse_args([
        "--config-file", face, "FACE.DATA.PATH", olivetti_mat, "FACE.NUM_IDENTITIES", "4",
        "FACE.MODEL.WIDTHS", "(4, 8)", "FACE.EMBED_DIM", "8", "DATALOADER.BATCH_SIZE", "8",
        "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "0", "OUTPUT_DIR", str(tmp_path)])
    results = aux_main(args)
    assert "rank1/original" in results and (tmp_path / "results.json").is_file()
    with pytest.raises(ValueError, match="TRAINER='FaceTrainer': it is not for ClsTrainer"):
        AUX_TRAINER_REGISTRY.get("ClsTrainer").setup_cfg(face)
    bad = tmp_path / "bad.yaml"
    bad.write_text("TRAINER: NoSuchTrainer\n")
    with pytest.raises(ValueError, match="'NoSuchTrainer' is not a registered"):
        aux_trainer(str(bad))
