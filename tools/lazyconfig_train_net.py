#!/usr/bin/env python
r"""Train or evaluate a LazyConfig (.py or .yaml) model with kd_det: Detectron2's
tools/lazyconfig_train_net.py plus what kd_det's yacs path does: datasets registered from
the command line and checked before the first step, the teacher's AP logged before the
first KD step, a learning curve (OUTPUT_DIR/curve.json), the student exported at the end.

    python tools/lazyconfig_train_net.py --config-file configs/builtin/kd.py
    python tools/lazyconfig_train_net.py --config-file configs/builtin/kd.py --resume
    python tools/lazyconfig_train_net.py --config-file configs/builtin/student.py --eval-only \
        train.init_checkpoint=output/builtin/kd_lazy/student_final.pth
    python tools/lazyconfig_train_net.py --config-file ... \
        --dataset-coco mine_train ann/train.json images/train \
        'dataloader.train.dataset.names=mine_train'

A ``.py`` LazyConfig is a Python program (Detectron2's design): loading it runs it, so give
only ``.py`` files you trust. A ``.yaml`` LazyConfig (a saved run, a student export) is read
as data: plain YAML (a ``!!python`` tag is refused), its ``_target_`` limited to model,
data, evaluation and solver callables (kd_det.engine.lazy_yaml.SAFE_TARGET_MODULES), and
``model.teacher.allow_unsafe_yaml`` accepted only on the command line.
"""
import logging

from detectron2.config import LazyConfig, instantiate
from detectron2.engine import (
    AMPTrainer,
    SimpleTrainer,
    default_setup,
    default_writers,
    hooks,
)
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import kd_det  # noqa: F401  (registers DistillRCNN, the backbones and kd_det's datasets)
from kd_det.checkpoint import SafeDetectionCheckpointer
from kd_det.data import (
    check_dataset_registered,
    check_voc_evaluable,
    register_from_arguments,
)
from kd_det.engine import (
    ResumeCheckpointer,
    check_class_count,
    create_ddp_model,
    export_lazy_student,
)
from kd_det.engine.cli import argument_parser, launch_main
from kd_det.engine.hooks import EvalCurveHook, ExportStudentHook, TeacherEvalHook
from kd_det.engine.lazy import build_optimizer, lazy_test
from kd_det.engine.lazy_yaml import load_lazy_config, plain_lazy_config
from kd_det.modeling import DistillRCNN

logger = logging.getLogger("detectron2")


def _names(loader_cfg):
    names = loader_cfg.dataset.names
    return [names] if isinstance(names, str) else list(names)


def check_data(cfg, model) -> None:
    """Before any step: the datasets are registered and their classes fit the model (the
    records themselves are checked as kd_det.data.checked_dataset_dicts loads them)."""
    kd = isinstance(model, DistillRCNN)
    k = (model.student if kd else model).roi_heads.num_classes
    key = "model.student.roi_heads.num_classes" if kd else "model.roi_heads.num_classes"
    for part in ("train", "test"):
        for name in _names(cfg.dataloader[part]):
            check_dataset_registered(name, f"dataloader.{part}.dataset.names")
            check_class_count(k, name, f"dataloader.{part}.dataset.names", num_classes_key=key)
    for name in _names(cfg.dataloader.test):
        check_voc_evaluable(name)


def do_test(cfg, model):
    return lazy_test(cfg, model)


def do_train(args, cfg):
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    check_data(cfg, model)
    optim = build_optimizer(cfg.optimizer, model)
    train_loader = instantiate(cfg.dataloader.train)
    distiller = model if isinstance(model, DistillRCNN) else None
    model = create_ddp_model(model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, train_loader, optim)
    out = cfg.train.output_dir
    checkpointer = ResumeCheckpointer(model, out, trainer=trainer)
    kd_hooks = []
    if distiller is not None and cfg.train.get("eval_teacher_before_train", True):
        kd_hooks.append(TeacherEvalHook(
            distiller.teachers_in_student_classes(),
            lambda teacher: {"test": lazy_test(cfg, teacher, f"{out}/teacher_inference")}))
    trainer.register_hooks(kd_hooks + [
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer)
        if comm.is_main_process() else None,
        EvalCurveHook(cfg.train.eval_period, lambda: do_test(cfg, model), out),
        hooks.PeriodicWriter(default_writers(out, cfg.train.max_iter),
                             period=cfg.train.log_period) if comm.is_main_process() else None,
        ExportStudentHook(lambda path: export_lazy_student(cfg, path, out), out)
        if distiller is not None else None,
    ])
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    # The checkpoint holds the iteration that finished; training goes on from the next.
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)


def setup(args):
    cfg = LazyConfig.apply_overrides(load_lazy_config(args.config_file), args.opts)
    # Plain values and LazyCall nodes only (ShapeSpec too), so that the config.yaml
    # default_setup saves and the student export read back as data.
    cfg = plain_lazy_config(cfg)
    default_setup(cfg, args)
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="kd_det")
    register_from_arguments(args)  # after the loggers: a replaced dataset is logged
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = instantiate(cfg.model)
        model.to(cfg.train.device)
        check_data(cfg, model)
        model = create_ddp_model(model)
        SafeDetectionCheckpointer(model).load(cfg.train.init_checkpoint)
        return do_test(cfg, model)
    do_train(args, cfg)


if __name__ == "__main__":
    parser = argument_parser()
    parser.description = __doc__  # --help says what loading a .py or a .yaml does
    launch_main(main, parser.parse_args())
