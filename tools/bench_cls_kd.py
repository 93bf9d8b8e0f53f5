#!/usr/bin/env python
"""Classification KD benchmark on Fashion-MNIST (kd_det.benchmarks.classification): two
teachers, the student alone, a validation search for KD, FitNets, FNKD and MEAL V2, then
every row over 3 seeds on the official test set -> results/cls_kd.json and .png.

    OMP_NUM_THREADS=1 python tools/bench_cls_kd.py --jobs 2
    python tools/bench_cls_kd.py --quick      # smoke run of the whole pipeline (seconds)

Planned budget (2 cores, --jobs 2, one torch thread per job). CPU s/iteration measured
with 25-iteration probes: student 0.050, teacher 0.153, KD / FNKD 0.078, FitNets hint stage
0.070, MEAL V2 (2 teachers) 0.135; a val evaluation ~0.8 s (student) / ~3.5 s (teacher):
  2 teachers x 4000 it                                        ~ 1350 CPU-s
  student alone 3 x 4000, continued CE 3 x 2000                ~  970
  KD 3 candidates + 2 seeds, FNKD 2 + 2, FitNets 2 + 2, x 4000 ~ 4240
  MEAL V2 2 candidates + 2 seeds, x 2000                       ~ 1120
  teacher evaluation, start-up of 27 runs                      ~  100
  ~ 7800 CPU-s on 2 workers = 65 min; +10% for two jobs sharing the memory bus and a few
  minutes of one idle core where the searches are decided: ~75 min.
Measured (results/cls_kd.json, total_wall_s): 81.5 min.
"""

from kd_det.benchmarks import classification
from kd_det.benchmarks.orchestrator import apply_quick, benchmark_parser, start_benchmark


def main():
    parser = benchmark_parser(__doc__, "configs/classification", "./output/cls_bench",
                              "results/cls_kd.json", iters=4000, jobs=2)
    parser.add_argument("--extra-iters", type=int, default=2000,
                        help="iterations of MEAL V2 and of its continued-CE control, from "
                             "the trained student alone")
    args = parser.parse_args()
    if args.quick:
        apply_quick(args, classification.quick_settings())
    report = classification.run_benchmark(
        args.config_dir, args.output_root, args.json, args.png, args.seeds, args.iters,
        args.extra_iters, command=start_benchmark(args), opts=args.opts, jobs=args.jobs)
    print(classification.format_table(report))


if __name__ == "__main__":
    main()
