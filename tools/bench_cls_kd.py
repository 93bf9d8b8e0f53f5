#!/usr/bin/env python
"""Classification KD benchmark on Fashion-MNIST: teachers, student alone, KD, FitNets, FNKD
and MEAL V2 on one student and schedule, 3 seeds -> results/cls_kd.json and .png.

    OMP_NUM_THREADS=1 python tools/bench_cls_kd.py
    python tools/bench_cls_kd.py --iters 2000 --seeds 0 1 2 CLS.DATA.TRAIN_SIZE 20000
"""
from kd_det.benchmarks import classification
from kd_det.benchmarks.orchestrator import benchmark_parser, start_benchmark


def main():
    parser = benchmark_parser(__doc__, "configs/classification", "./output/cls_bench",
                              "results/cls_kd.json", iters=500)
    parser.add_argument("--stage1-iters", type=int, default=100,
                        help="FitNets hint-only iterations, added before the common schedule")
    args = parser.parse_args()
    report = classification.run_benchmark(
        args.config_dir, args.output_root, args.json, args.png, args.seeds, args.iters,
        args.stage1_iters, command=start_benchmark(args), opts=args.opts, jobs=args.jobs)
    print(classification.format_table(report))


if __name__ == "__main__":
    main()
