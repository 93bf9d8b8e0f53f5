#!/usr/bin/env python
"""Accuracy benchmark on BCCD (PASCAL VOC layout): teacher, baseline student and
distilled student over seeds, the paper's ablation, and CPU inference speed.

    python tools/bench_accuracy.py --data ../shared/data/BCCD
    python tools/bench_accuracy.py --quick          # smoke run: short schedule, 1 seed
"""
import argparse
import os
import sys

import torch

from kd_det.data import register_all
from kd_det.engine.protocol import ABLATIONS, compare, format_table, write_report

CONFIGS = {
    "teacher": "configs/BCCD/teacher.yaml",
    "student": "configs/BCCD/student.yaml",
    "kd": "configs/BCCD/kd.yaml",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("KD_DET_BCCD_ROOT", ""),
                        help="BCCD root (VOC layout); default $KD_DET_BCCD_ROOT or "
                             "$DETECTRON2_DATASETS/BCCD")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 seed, 20 iterations, no ablation")
    parser.add_argument("--work-dir", default="output/bench_bccd")
    parser.add_argument("--output", default="results/bccd_accuracy.json")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (default: all cores); use 1 on a busy machine, "
                             "where OpenMP threads competing for cores slow training many-fold")
    parser.add_argument("--jobs", type=int, default=1,
                        help="student trainings run in parallel (1 torch thread each)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
