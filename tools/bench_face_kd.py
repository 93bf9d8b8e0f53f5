#!/usr/bin/env python
"""Low-resolution face KD benchmark on Olivetti: student alone, KD with normalised L2 and
KD with MK-MMD over 3 seeds, the fixed-vs-retrained teacher training time and the CPU time
per face -> results/face_lr_kd.json and .png (~15-20 min with one thread).

    OMP_NUM_THREADS=1 python tools/bench_face_kd.py
    python tools/bench_face_kd.py --iters 100 --seeds 0 --json /tmp/f.json --png /tmp/f.png
"""
from kd_det.benchmarks import face
from kd_det.benchmarks.orchestrator import benchmark_parser, start_benchmark


def main():
    args = benchmark_parser(__doc__, "configs/face", "./output/face_bench",
                            "results/face_lr_kd.json", iters=300).parse_args()
    report = face.run_benchmark(
        args.config_dir, args.output_root, args.json, args.png, args.seeds, args.iters,
        command=start_benchmark(args), opts=args.opts, jobs=args.jobs)
    print(report["table_markdown"])


if __name__ == "__main__":
    main()
