#!/usr/bin/env python
"""Classification KD benchmark on Fashion-MNIST: teachers, student alone, KD, FitNets, FNKD
and MEAL V2 on one student and schedule, 3 seeds -> results/cls_kd.json and .png.

    OMP_NUM_THREADS=1 python tools/bench_cls_kd.py
    python tools/bench_cls_kd.py --iters 2000 --seeds 0 1 2 CLS.DATA.TRAIN_SIZE 20000
"""
import argparse
import shlex
import sys

import torch
from detectron2.utils.logger import setup_logger

from kd_det.classification.bench import format_table, run_benchmark


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-dir", default="configs/classification")
    parser.add_argument("--output-root", default="./output/cls_bench")
    parser.add_argument("--json", default="results/cls_kd.json")
    parser.add_argument("--png", default="results/cls_kd.png")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iters", type=int, default=500, help="SOLVER.MAX_ITER of every run")
    parser.add_argument("--stage1-iters", type=int, default=100,
                        help="FitNets hint-only iterations, added before the common schedule")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    setup_logger(name="detectron2")
    setup_logger(name="kd_det")
    report = run_benchmark(
        args.config_dir, args.output_root, args.json, args.png, args.seeds, args.iters,
        args.stage1_iters, command=shlex.join(["python", *sys.argv]), opts=args.opts)
    print(format_table(report))


if __name__ == "__main__":
    main()
