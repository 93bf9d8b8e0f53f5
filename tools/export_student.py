#!/usr/bin/env python
"""Export a detector: the student of a DistillRCNN checkpoint as a plain GeneralizedRCNN
checkpoint plus its config (loadable by vanilla Detectron2), or any GeneralizedRCNN (a
DistillRCNN's student, a student export, a teacher) as one TorchScript or ONNX file that
loads without kd_det or Detectron2, with its input contract in `<file>.json`.

    python tools/export_student.py --config-file configs/builtin/kd.yaml \
        --weights output/builtin/kd/model_final.pth --output output/builtin/kd/export
    python tools/export_student.py --format onnx --check kd_builtin_val \
        --config-file configs/builtin/kd.yaml \
        --weights output/builtin/kd/model_final.pth --output output/builtin/kd/export

--check takes image files, folders or registered dataset names (e.g. bccd_test): the
written file must give the eager model's detections on each, or nothing is written. The
onnx format needs the deploy extra (pip install -e .[deploy]).
"""
import argparse
import sys

from detectron2.config import get_cfg

import kd_det
from kd_det.engine import export_student


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True,
                        help="the DistillRCNN training config, or a GeneralizedRCNN config")
    parser.add_argument("--weights", required=True,
                        help="a DistillRCNN checkpoint, or the config's GeneralizedRCNN weights")
    parser.add_argument("--output", required=True, help="folder for the exported files")
    parser.add_argument("--format", default="checkpoint",
                        choices=["checkpoint", "torchscript", "onnx"])
    parser.add_argument("--name", default="student_final", help="file name without suffix")
    parser.add_argument("--check", nargs="+", default=[], metavar="IMAGES",
                        help="images, folders or dataset names the export must match eager on")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing export in --output")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    cfg = get_cfg()
    kd_det.add_kd_config(cfg)
    kd_det.add_mobilenet_config(cfg)
    kd_det.add_efficientnet_config(cfg)
    cfg.merge_from_file(args.config_file, allow_unsafe=False)
    cfg.merge_from_list(args.opts)
    if args.format == "checkpoint":
        if args.check:
            parser.error("--check compares a TorchScript or ONNX export with eager; the "
                         "checkpoint format is the eager model's own weights.")
        out = export_student(cfg, args.weights, args.output, name=args.name,
                             overwrite=args.overwrite)
        print(f"student weights: {out['weights']}\nstudent config:  {out['config']}")
        return out
    from kd_det.deploy import export_deployable

    try:
        out = export_deployable(cfg, args.weights, args.output, args.format, args.check,
                                args.overwrite, args.name, config_name=args.config_file)
    except (ImportError, ValueError, FileExistsError, FileNotFoundError, RuntimeError) as e:
        sys.exit(f"export_student: nothing written: {e}")
    print(f"{args.format} model: {out['model']}\ninput contract: {out['contract']}")
    if "check" in out["contract_data"]:
        print(f"check passed: {out['contract_data']['check']}")
    return out


if __name__ == "__main__":
    main()
