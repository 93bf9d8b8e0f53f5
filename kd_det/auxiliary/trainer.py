"""The training engine of the auxiliary (non-detection) distillers.

Classification, face and super-resolution KD all train through Detectron2's own loop
(TrainerBase + SimpleTrainer, hooks, EventStorage, fvcore Checkpointer, JSON/console
writers, LR schedulers) driven by a yacs config. A task is one registered subclass: its
config keys (``add_config``), its model (a module that returns a dict of losses in
training mode), its training set and its evaluation. Its configs name it in TRAINER, and
tools/train_aux.py runs whichever trainer a config names: the teacher loading, the config
defaults and the entry point are shared.
"""
import logging
import os
from typing import Dict

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.data.samplers import TrainingSampler
from detectron2.engine import SimpleTrainer, TrainerBase, hooks
from detectron2.solver import build_lr_scheduler
from detectron2.solver.build import maybe_add_gradient_clipping
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import CommonMetricPrinter, JSONWriter
from detectron2.utils.logger import setup_logger
from detectron2.utils.registry import Registry

from ..checkpoint import SafeCheckpointer, safe_torch_load
from ..file_io import save_json
from ..modeling.frozen import load_strict

__all__ = ["AUX_TRAINER_REGISTRY", "get_aux_cfg", "AuxTrainer", "aux_trainer", "aux_main",
           "build_infinite_loader", "load_aux_teacher"]

AUX_TRAINER_REGISTRY = Registry("AUX_TRAINER")
AUX_TRAINER_REGISTRY.__doc__ = """AuxTrainer subclasses; an auxiliary config names its own
in TRAINER."""


def load_aux_teacher(net: torch.nn.Module, path: str, key: str, head: str, expected: int,
                     count_key: str, what: str) -> torch.nn.Module:
    """Load a teacher that an auxiliary trainer saved (weights under "student.") strictly
    into `net`. A checkpoint whose `head` weight has another number of outputs than
    `expected` (the config's `count_key`) is refused first, naming both."""
    if os.path.isfile(path):
        try:
            state = safe_torch_load(path)
        except ValueError as e:
            raise ValueError(f"{key}: {e}") from e
        weight = state.get("model", state).get(f"student.{head}") \
            if isinstance(state, dict) else None
        if weight is not None and weight.shape[0] != expected:
            raise ValueError(
                f"{key}={path!r} is a teacher of {weight.shape[0]} {what} but {count_key}="
                f"{expected}: distil from a teacher trained on the same {what}")
    load_strict(torch.nn.ModuleDict({"student": net}), path, key=key)
    return net


def get_aux_cfg() -> CfgNode:
    """What every auxiliary config holds: a few top keys, and Detectron2's SOLVER node set
    to the short CPU schedule the auxiliary tasks share (SGD 0.05, cosine, weight decay
    5e-4). A trainer's ``add_config`` adds its task's keys and changes what differs."""
    cfg = CfgNode()
    # Detectron2's CfgNode.merge_from_file compares the file's VERSION with this one.
    cfg.VERSION = 2
    # The AUX_TRAINER_REGISTRY name of the trainer this config is for.
    cfg.TRAINER = ""
    cfg.OUTPUT_DIR = "./output/aux"
    cfg.SEED = 0
    cfg.CUDNN_BENCHMARK = False
    cfg.MODEL = CfgNode()
    cfg.MODEL.DEVICE = "cpu"
    # Initial weights of the trainable model (student); empty = from scratch.
    cfg.MODEL.WEIGHTS = ""
    cfg.DATALOADER = CfgNode()
    cfg.DATALOADER.BATCH_SIZE = 64
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER = get_cfg().SOLVER.clone()
    # "SGD" (Detectron2's build_optimizer settings) or "ADAM" (BASE_LR, WEIGHT_DECAY).
    cfg.SOLVER.OPTIMIZER = "SGD"
    cfg.SOLVER.LR_SCHEDULER_NAME = "WarmupCosineLR"
    cfg.SOLVER.BASE_LR = 0.05
    cfg.SOLVER.WEIGHT_DECAY = 5e-4
    cfg.SOLVER.STEPS = ()
    cfg.SOLVER.CHECKPOINT_PERIOD = 1000
    cfg.SOLVER.LOG_PERIOD = 20
    cfg.TEST = CfgNode()
    # Evaluate every N iterations (0: only at the end of training).
    cfg.TEST.EVAL_PERIOD = 0
    return cfg


def build_infinite_loader(dataset, batch_size: int, seed: int, num_workers: int = 0,
                          collate_fn=None):
    """An endless, seeded, shuffled stream of batches (Detectron2's TrainingSampler)."""
    sampler = TrainingSampler(len(dataset), shuffle=True, seed=seed)
    batch_sampler = torch.utils.data.BatchSampler(sampler, batch_size, drop_last=True)
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=batch_sampler, num_workers=num_workers, collate_fn=collate_fn
    )


class AuxTrainer(TrainerBase):
    """Subclasses implement `add_config`, `build_model`, `build_train_loader` and `test`, and
    register in AUX_TRAINER_REGISTRY."""

    def __init__(self, cfg: CfgNode):
        self.check_config(cfg)
        super().__init__()
        self.cfg = cfg
        seed_all_rng(cfg.SEED)
        model = self.build_model(cfg).to(cfg.MODEL.DEVICE)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        self._trainer = SimpleTrainer(model, data_loader, optimizer)
        self.model = model
        self.optimizer = optimizer
        self.scheduler = build_lr_scheduler(cfg, optimizer)
        self.checkpointer = SafeCheckpointer(
            model, cfg.OUTPUT_DIR, optimizer=optimizer, scheduler=self.scheduler
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.final_results: Dict = {}
        self.register_hooks(self.build_hooks())

    # ---- what a subclass provides -------------------------------------------------
    @classmethod
    def add_config(cls, cfg: CfgNode) -> None:
        """Add the task's keys to `cfg` (from get_aux_cfg) and set the defaults it changes."""
        raise NotImplementedError(f"{cls.__name__} must implement add_config(cfg)")

    @classmethod
    def check_config(cls, cfg) -> None:
        """Refuse bad keys, naming them, before anything is built."""

    @classmethod
    def build_model(cls, cfg) -> torch.nn.Module:
        raise NotImplementedError(f"{cls.__name__} must implement build_model(cfg)")

    @classmethod
    def build_train_loader(cls, cfg):
        raise NotImplementedError(f"{cls.__name__} must implement build_train_loader(cfg)")

    @classmethod
    def test(cls, cfg, model) -> Dict[str, float]:
        raise NotImplementedError(f"{cls.__name__} must implement test(cfg, model)")

    # ---- shared machinery ------------------------------------------------------------
    @classmethod
    def get_default_cfg(cls) -> CfgNode:
        """get_aux_cfg() with this trainer's keys and defaults."""
        cfg = get_aux_cfg()
        cfg.TRAINER = cls.__name__
        cls.add_config(cfg)
        return cfg

    @classmethod
    def setup_cfg(cls, config_file: str = "", opts=()) -> CfgNode:
        """The defaults, then a YAML file (with _BASE_, read as safe YAML), then KEY VALUE
        overrides; frozen. A file written for another trainer is refused."""
        cfg = cls.get_default_cfg()
        if config_file:
            named = _named_trainer(config_file)
            if named not in ("", cls.__name__):
                raise ValueError(f"{config_file} has TRAINER={named!r}: it is not for "
                                 f"{cls.__name__}")
            cfg.merge_from_file(config_file, allow_unsafe=False)
        cfg.merge_from_list(list(opts))
        cfg.freeze()
        return cfg

    @classmethod
    def build_optimizer(cls, cfg, model) -> torch.optim.Optimizer:
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameter: check MODEL.* and KD.* keys")
        name = cfg.SOLVER.OPTIMIZER.upper()
        if name == "SGD":
            opt_cls = torch.optim.SGD
            kwargs = dict(lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM,
                          nesterov=cfg.SOLVER.NESTEROV, weight_decay=cfg.SOLVER.WEIGHT_DECAY)
        elif name == "ADAM":
            opt_cls = torch.optim.Adam
            kwargs = dict(lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY)
        else:
            raise ValueError(f"SOLVER.OPTIMIZER={cfg.SOLVER.OPTIMIZER!r}: use 'SGD' or 'ADAM'")
        return maybe_add_gradient_clipping(cfg, opt_cls)(params, **kwargs)

    def build_hooks(self):
        cfg = self.cfg
        ret = [
            hooks.IterationTimer(),
            hooks.LRScheduler(self.optimizer, self.scheduler),
        ]
        if comm.is_main_process() and cfg.SOLVER.CHECKPOINT_PERIOD > 0:
            ret.append(hooks.PeriodicCheckpointer(
                self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, max_iter=self.max_iter))

        def evaluate():
            self.final_results = self.test(cfg, self.model)
            return self.final_results

        ret.append(hooks.EvalHook(cfg.TEST.EVAL_PERIOD, evaluate))
        if comm.is_main_process():
            os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
            ret.append(hooks.PeriodicWriter([
                CommonMetricPrinter(self.max_iter),
                JSONWriter(os.path.join(cfg.OUTPUT_DIR, "metrics.json")),
            ], period=cfg.SOLVER.LOG_PERIOD))
        return ret

    def resume_or_load(self, resume: bool = True):
        """Resume from the last checkpoint in OUTPUT_DIR, else load MODEL.WEIGHTS (if any)."""
        weights = self.cfg.MODEL.WEIGHTS
        resuming = resume and self.checkpointer.has_checkpoint()
        try:
            ckpt = self.checkpointer.resume_or_load(weights, resume=resume)
        except ValueError as e:  # SafeCheckpointer's refusal, naming the file
            key = "--resume (OUTPUT_DIR/last_checkpoint)" if resuming else "MODEL.WEIGHTS"
            raise ValueError(f"{key}: {e}") from e
        if resuming:
            self.start_iter = ckpt.get("iteration", -1) + 1
        logging.getLogger(__name__).info("initial weights: %s", weights or "(from scratch)")

    def run_step(self):
        self._trainer.iter = self.iter
        self._trainer.run_step()

    def train(self) -> Dict[str, float]:
        """Train to SOLVER.MAX_ITER and return the final evaluation."""
        super().train(self.start_iter, self.max_iter)
        return self.final_results

    @classmethod
    def run(cls, cfg, eval_only: bool = False, resume: bool = False) -> Dict[str, float]:
        """Train (or, with eval_only, evaluate MODEL.WEIGHTS) and return the test metrics,
        also written to OUTPUT_DIR/results.json with the config that produced them."""
        if eval_only:
            cls.check_config(cfg)
            if not cfg.MODEL.WEIGHTS:
                raise ValueError("--eval-only needs MODEL.WEIGHTS: the model_final.pth to evaluate")
            model = cls.build_model(cfg).to(cfg.MODEL.DEVICE)
            load_strict(model, cfg.MODEL.WEIGHTS, key="MODEL.WEIGHTS")
            return cls.test(cfg, model)
        trainer = cls(cfg)
        trainer.resume_or_load(resume=resume)
        results = trainer.train()
        if comm.is_main_process():
            save_json(os.path.join(cfg.OUTPUT_DIR, "results.json"),
                      {"results": results, "config": cfg.dump()})
        return results

    def state_dict(self):
        ret = super().state_dict()
        ret["_trainer"] = self._trainer.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self._trainer.load_state_dict(state_dict["_trainer"])


def _named_trainer(config_file: str) -> str:
    return CfgNode.load_yaml_with_base(config_file, allow_unsafe=False).get("TRAINER", "")


def aux_trainer(config_file: str) -> type:
    """The AuxTrainer that `config_file` (its _BASE_ files included) names in TRAINER."""
    name = _named_trainer(config_file)
    if name not in AUX_TRAINER_REGISTRY:
        raise ValueError(f"{config_file}: TRAINER={name!r} is not a registered auxiliary "
                         f"trainer; use one of {sorted(k for k, _ in AUX_TRAINER_REGISTRY)}")
    return AUX_TRAINER_REGISTRY.get(name)


def aux_main(args) -> Dict[str, float]:
    """tools/train_aux.py: Detectron2's default_setup and logging for the trainer the
    config names, then training (``--resume`` continues) or ``--eval-only``."""
    from detectron2.engine import default_setup

    trainer = aux_trainer(args.config_file)
    cfg = trainer.setup_cfg(args.config_file, args.opts)
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="kd_det")
    return trainer.run(cfg, eval_only=args.eval_only, resume=args.resume)
