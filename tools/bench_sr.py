#!/usr/bin/env python
"""PISR benchmark (kd_det.benchmarks.sr): FSRCNN against the PISR student at x3 on Set5 and
Set14, PISR's loss weights chosen on a validation split of CSun_Hays80, 3 seeds ->
results/sr_pisr.json and .png.

    OMP_NUM_THREADS=1 python tools/bench_sr.py --jobs 2
    python tools/bench_sr.py --quick      # smoke run of the whole pipeline (seconds)

Planned budget (2 cores, --jobs 2, one torch thread per job), 16,000 iterations a run.
CPU seconds per iteration of 300-iteration probes (the probe's own CPU time: its
wall-clock, 1.4-1.5x that, also counted two other trainings sharing the cores):
FSRCNN 0.022, PISR teacher 0.042, PISR student (teacher forward + VID head) 0.052. A curve
point (val PSNR + per-loss gradient norms on 10 crops) ~1.3 s x 17, the final Set5/Set14/
val evaluation ~6 s, a worker's start ~5 s: ~35 s a run.
  2 teachers (imitation 1e-4, 1e-1), in parallel                   670 s
  3 FSRCNN seeds (queued first) and 4 search students, 2 workers  2370 s
  2 more seeds of the chosen student, in parallel                  830 s
  curve points, evaluations and starts on that path (~6 runs)      210 s
  ~ 4100 s = 68 min; +10% for two jobs sharing the memory bus: ~75 min. On a machine
  busy with two other trainings, expect ~1.45x (wall-clock of the probes).
Measured (results/sr_pisr.json, total_wall_s): 83.9 min; a PISR student took 1,030-1,090 s
of training against the plan's ~830 s.
"""

from kd_det.benchmarks import sr
from kd_det.benchmarks.orchestrator import apply_quick, benchmark_parser, start_benchmark


def main():
    p = benchmark_parser(__doc__, "configs/sr", "./output/sr_bench", "results/sr_pisr.json",
                         iters=16000, jobs=2)
    p.add_argument("--scale", type=int, default=3, choices=(2, 3, 4),
                   help="the one SR scale of the benchmark (configs/sr/*-x<scale>.yaml)")
    args = p.parse_args()
    if args.quick:
        apply_quick(args, sr.quick_settings())
    report = sr.run_benchmark(
        args.config_dir, args.output_root, args.json, args.png, args.seeds, args.iters,
        command=start_benchmark(args), scale=args.scale, opts=args.opts, jobs=args.jobs)
    print(report["table_markdown"])


if __name__ == "__main__":
    main()
