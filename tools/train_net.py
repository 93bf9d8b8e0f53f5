#!/usr/bin/env python
"""Train or evaluate a Detectron2 model with kd_det: plain teachers and DistillRCNN
students alike, with Detectron2's usual arguments.

    python tools/train_net.py --config-file configs/builtin/kd.yaml
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS export/student_final.onnx
    python tools/train_net.py --config-file ... --num-gpus 8 SOLVER.IMS_PER_BATCH 32

Your own data without code: register datasets from the command line (repeatable), then
name them in DATASETS.TRAIN / DATASETS.TEST:

    python tools/train_net.py --config-file configs/builtin/kd.yaml \
        --dataset-coco mine_train ann/train.json images/train \
        --dataset-voc mine_val /data/MyVOC test cat,dog \
        DATASETS.TRAIN '("mine_train",)' DATASETS.TEST '("mine_val",)'
"""
from detectron2.config import get_cfg
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import kd_det
from kd_det.data import register_from_arguments
from kd_det.deploy.wrapper import EXPORTED_SUFFIXES, ExportedDetector, exported_eval_config
from kd_det.engine import KDTrainer, ResumeCheckpointer, check_datasets
from kd_det.engine.cli import argument_parser, launch_main


def setup(args):
    cfg = get_cfg()
    kd_det.add_kd_config(cfg)
    kd_det.add_mobilenet_config(cfg)
    kd_det.add_efficientnet_config(cfg)
    kd_det.config.merge_kd_config_file(cfg, args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    # default_setup configures Detectron2's and fvcore's loggers; kd_det's own lines
    # (teacher loaded and its AP, weights inherited, student exported) go to the same places.
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="kd_det")
    register_from_arguments(args)  # after the loggers: a replaced dataset is logged
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        check_datasets(cfg)
        if cfg.MODEL.WEIGHTS.endswith(EXPORTED_SUFFIXES):  # a TorchScript or ONNX export
            return KDTrainer.test(exported_eval_config(cfg, cfg.MODEL.WEIGHTS),
                                  ExportedDetector(cfg.MODEL.WEIGHTS))
        model = KDTrainer.build_model(cfg)
        ResumeCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume)
        return KDTrainer.test(cfg, model)
    trainer = KDTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    launch_main(main, argument_parser().parse_args())
