#!/usr/bin/env python
"""Accuracy benchmark on BCCD (PASCAL VOC layout): teacher, baseline student and
distilled student over seeds, the paper's ablation, and CPU inference speed.

    python tools/bench_accuracy.py --data ../shared/data/BCCD
    python tools/bench_accuracy.py --quick          # smoke run: short schedule, 1 seed
"""
import argparse
import os
import sys

from kd_det.data import register_all
from kd_det.engine.protocol import (
    ABLATIONS,
    add_run_arguments,
    apply_run_arguments,
    compare,
    format_table,
    role_configs,
    write_report,
)

CONFIGS = role_configs("configs/BCCD")
SHARED_BCCD = os.path.join("..", "shared", "data", "BCCD")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("KD_DET_BCCD_ROOT", ""),
                        help="BCCD root (VOC layout); default $KD_DET_BCCD_ROOT, else "
                             f"{SHARED_BCCD} when it exists, else $DETECTRON2_DATASETS/BCCD")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 seed, 20 iterations, no ablation")
    parser.add_argument("--work-dir", default="output/bench_bccd")
    parser.add_argument("--output", default="results/bccd_accuracy.json")
    add_run_arguments(parser)
    args = parser.parse_args()
    apply_run_arguments(args)
    if not args.data and os.path.isdir(SHARED_BCCD):
        args.data = SHARED_BCCD
    if args.data:
        os.environ["KD_DET_BCCD_ROOT"] = os.path.abspath(args.data)
        register_all()  # re-register the BCCD splits at the new root
    opts, ablations, seeds = {}, ABLATIONS, args.seeds
    if args.quick:
        short = ["SOLVER.MAX_ITER", 20, "SOLVER.STEPS", "()", "TEST.EVAL_PERIOD", 0]
        opts = {"teacher": short, "student": short, "kd": short}
        ablations, seeds = {}, seeds[:1]
        args.work_dir += "_quick"
    results = compare(CONFIGS, args.work_dir, seeds, opts=opts, ablations=ablations,
                      jobs=args.jobs)
    results["command"] = " ".join(["python"] + sys.argv)
    results["hardware"] = f"{os.cpu_count()} CPU cores"
    png = os.path.splitext(args.output)[0] + ".png"
    write_report(results, args.output, png, "BCCD: teacher vs student vs distilled student")
    print(format_table(results))
    print(f"\nwrote {args.output} and {png}")


if __name__ == "__main__":
    main()
