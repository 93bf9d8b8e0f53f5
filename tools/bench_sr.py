#!/usr/bin/env python
"""The PISR super-resolution table (results/sr_pisr.json + .png) in one command.

    python tools/bench_sr.py                      # x2, x3, x4; 3 seeds; ~25 min on 2 CPU cores
    python tools/bench_sr.py --scales 4 --seeds 0 --iters 200   # a quick look
"""
import argparse
import shlex
import sys

from detectron2.utils.logger import setup_logger

from kd_det.sr.bench import run_benchmark


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--output-dir", default="./output/sr_bench")
    p.add_argument("--json", default="results/sr_pisr.json")
    p.add_argument("--png", default="results/sr_pisr.png")
    p.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iters", type=int, default=1500, help="iterations per run (all runs)")
    p.add_argument("--lr-patch", type=int, default=16, help="LR patch side; HR = scale x this")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel, 1 thread each")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = p.parse_args()
    setup_logger(name="kd_det")
    run_benchmark(
        command=" ".join(shlex.quote(a) for a in ["python"] + sys.argv),
        output_dir=args.output_dir, json_path=args.json, png_path=args.png,
        scales=args.scales, seeds=args.seeds, iters=args.iters, lr_patch=args.lr_patch,
        batch_size=args.batch_size, jobs=args.jobs, extra_opts=args.opts,
    )


if __name__ == "__main__":
    main()
