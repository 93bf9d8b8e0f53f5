#!/usr/bin/env python
"""Train PISR teachers and students, or the FSRCNN baseline, on the Y channel.

    python tools/train_sr_kd.py --config-file configs/sr/PISR-teacher-x4.yaml
    python tools/train_sr_kd.py --config-file configs/sr/PISR-student-x4.yaml
    python tools/train_sr_kd.py --config-file configs/sr/FSRCNN-x4.yaml SOLVER.MAX_ITER 2000
    python tools/train_sr_kd.py --config-file ... --eval-only MODEL.WEIGHTS out/model_final.pth
"""
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils.logger import setup_logger

from kd_det.sr import run_sr, setup_sr_cfg


def main():
    args = default_argument_parser().parse_args()
    cfg = setup_sr_cfg(args.config_file, args.opts)
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, name="kd_det")
    return run_sr(cfg, eval_only=args.eval_only, resume=args.resume)


if __name__ == "__main__":
    main()
