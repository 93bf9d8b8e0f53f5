#!/usr/bin/env python
"""Write the student of a DistillRCNN checkpoint as a plain GeneralizedRCNN checkpoint
plus its config, loadable by vanilla Detectron2.

    python tools/export_student.py --config-file configs/builtin/kd.yaml \
        --weights output/kd/model_final.pth --output output/kd/export
"""
import argparse

from detectron2.config import get_cfg

import kd_det
from kd_det.engine import export_student


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="the DistillRCNN training config")
    parser.add_argument("--weights", required=True, help="a DistillRCNN checkpoint")
    parser.add_argument("--output", required=True, help="folder for student_final.pth/.yaml")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing export in --output")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args()
    cfg = get_cfg()
    kd_det.add_kd_config(cfg)
    kd_det.add_mobilenet_config(cfg)
    cfg.merge_from_file(args.config_file, allow_unsafe=False)
    cfg.merge_from_list(args.opts)
    out = export_student(cfg, args.weights, args.output, overwrite=args.overwrite)
    print(f"student weights: {out['weights']}\nstudent config:  {out['config']}")


if __name__ == "__main__":
    main()
