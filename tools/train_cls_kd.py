#!/usr/bin/env python
"""Train Fashion-MNIST teachers, students and every classification KD method.

    python tools/train_cls_kd.py --config-file configs/classification/teacher.yaml
    python tools/train_cls_kd.py --config-file configs/classification/teacher.yaml \
        SEED 1 OUTPUT_DIR ./output/cls/teacher_seed1
    python tools/train_cls_kd.py --config-file configs/classification/kd.yaml
    python tools/train_cls_kd.py --config-file ... --eval-only MODEL.WEIGHTS out/model_final.pth
"""
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from kd_det.classification import run_cls, setup_cls_cfg


def main():
    args = default_argument_parser().parse_args()
    cfg = setup_cls_cfg(args.config_file, args.opts)
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="kd_det")
    return run_cls(cfg, eval_only=args.eval_only, resume=args.resume)


if __name__ == "__main__":
    main()
