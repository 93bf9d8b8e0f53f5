#!/usr/bin/env python
"""Low-resolution face KD benchmark on Olivetti: student alone, KD with normalised L2 and
KD with MK-MMD over 3 seeds, the fixed-vs-retrained teacher training time and the CPU time
per face -> results/face_lr_kd.json and .png (~15-20 min with one thread).

    OMP_NUM_THREADS=1 python tools/bench_face_kd.py
    python tools/bench_face_kd.py --iters 100 --seeds 0 --json /tmp/f.json --png /tmp/f.png
"""
import argparse
import shlex
import sys

import torch
from detectron2.utils.logger import setup_logger

from kd_det.face.bench import run_benchmark


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-dir", default="configs/face")
    parser.add_argument("--output-root", default="./output/face_bench")
    parser.add_argument("--json", default="results/face_lr_kd.json")
    parser.add_argument("--png", default="results/face_lr_kd.png")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iters", type=int, default=300, help="SOLVER.MAX_ITER of every run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    setup_logger(name="kd_det")
    report = run_benchmark(
        args.config_dir, args.output_root, args.json, args.png, args.seeds, args.iters,
        command=shlex.join(["python", *sys.argv]), opts=args.opts)
    print(report["table_markdown"])


if __name__ == "__main__":
    main()
