#!/usr/bin/env python
"""Train low-resolution face recognition teachers, students and their KD on Olivetti.

    python tools/train_face_kd.py --config-file configs/face/teacher.yaml
    python tools/train_face_kd.py --config-file configs/face/kd_mmd.yaml   # or student / kd_l2
    python tools/train_face_kd.py --config-file configs/face/kd_mmd.yaml \
        FACE.DATA.PATH /data/olivettifaces.mat FACE.KD.FEAT_WEIGHT 2.0
    python tools/train_face_kd.py --config-file ... --eval-only MODEL.WEIGHTS out/model_final.pth
"""
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from kd_det.face import run_face, setup_face_cfg


def main():
    args = default_argument_parser().parse_args()
    cfg = setup_face_cfg(args.config_file, args.opts)
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="kd_det")
    return run_face(cfg, eval_only=args.eval_only, resume=args.resume)


if __name__ == "__main__":
    main()
