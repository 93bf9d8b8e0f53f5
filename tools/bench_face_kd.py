#!/usr/bin/env python
"""Low-resolution face KD benchmark on Olivetti (kd_det.benchmarks.face): the HR teacher
kept fixed, the student alone, a validation search of the KD weights for MK-MMD and for
the normalised L2 over every seed, the chosen settings on the test faces, a plateau check
of the student, diagnostics, the fixed-vs-retrained teacher training time and the CPU time
per face -> results/face_lr_kd.json and .png.

    OMP_NUM_THREADS=1 python tools/bench_face_kd.py --jobs 2
    python tools/bench_face_kd.py --quick      # smoke run of the whole pipeline (seconds)

Planned budget (2 cores, --jobs 2, 1 torch thread per job). CPU s/iteration on a free core
(results/face_lr_kd.json of the 300-iteration protocol: student 0.050, KD 0.097, teacher
0.18), ratios confirmed by an interleaved 24-step probe on the loaded machine (KD MK-MMD
1.93x, KD L2 1.85x, teacher 3.25x the student); a validation pass ~0.23 s, a diagnostics
step ~0.2 s:
  HR teacher + LR-retrained teacher, 2000 it each                     ~  690 s
  student alone 3 x 2000 it, plateau check 3 x 4000 it                 ~  950 s
  KD search: 2 losses x 4 candidates x 3 seeds = 24 runs x ~200 s     ~ 4870 s
  ~ 6500 CPU-s over 2 workers: ~55 min, ~60 min with the CPU timing and the last run's
  tail. On a machine loaded by other jobs it stretches accordingly (x3 at load 3).
"""

from kd_det.benchmarks import face
from kd_det.benchmarks.orchestrator import apply_quick, benchmark_parser, start_benchmark


def main():
    parser = benchmark_parser(__doc__, "configs/face", "./output/face_bench",
                              "results/face_lr_kd.json", iters=2000, jobs=2)
    args = parser.parse_args()
    if args.quick:
        apply_quick(args, face.quick_settings())
    report = face.run_benchmark(
        args.config_dir, args.output_root, args.json, args.png, args.seeds, args.iters,
        command=start_benchmark(args), opts=args.opts, jobs=args.jobs)
    print(report["table_markdown"])


if __name__ == "__main__":
    main()
