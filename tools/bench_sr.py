#!/usr/bin/env python
"""The PISR super-resolution table (results/sr_pisr.json + .png) in one command.

    python tools/bench_sr.py                      # x2, x3, x4; 3 seeds; ~25 min on 2 CPU cores
    python tools/bench_sr.py --scales 4 --seeds 0 --iters 200   # a quick look
"""
from kd_det.benchmarks import sr
from kd_det.benchmarks.orchestrator import benchmark_parser, start_benchmark


def main():
    p = benchmark_parser(__doc__, "configs/sr", "./output/sr_bench", "results/sr_pisr.json",
                         iters=1500, jobs=2)
    p.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--lr-patch", type=int, default=16, help="LR patch side; HR = scale x this")
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()
    report = sr.run_benchmark(
        args.config_dir, args.output_root, args.json, args.png, args.seeds, args.iters,
        command=start_benchmark(args), scales=args.scales, lr_patch=args.lr_patch,
        batch_size=args.batch_size, opts=args.opts, jobs=args.jobs)
    print(report["table_markdown"])


if __name__ == "__main__":
    main()
