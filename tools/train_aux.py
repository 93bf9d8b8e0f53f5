#!/usr/bin/env python
"""Train (or evaluate) the auxiliary distillers, with Detectron2's arguments: the trainer
is the one the config names in TRAINER (ClsTrainer, FaceTrainer, SRTrainer).

    python tools/train_aux.py --config-file configs/classification/teacher.yaml
    python tools/train_aux.py --config-file configs/classification/teacher.yaml \
        SEED 1 OUTPUT_DIR ./output/cls/teacher_seed1
    python tools/train_aux.py --config-file configs/face/kd_mmd.yaml FACE.KD.FEAT_WEIGHT 2.0
    python tools/train_aux.py --config-file configs/sr/PISR-student-x4.yaml
    python tools/train_aux.py --config-file ... --eval-only MODEL.WEIGHTS out/model_final.pth
"""
from detectron2.engine import default_argument_parser

import kd_det.auxiliary.classification  # noqa: F401  (each package registers its trainer)
import kd_det.auxiliary.face  # noqa: F401
import kd_det.auxiliary.sr  # noqa: F401
from kd_det.auxiliary.trainer import aux_main

if __name__ == "__main__":
    aux_main(default_argument_parser().parse_args())
