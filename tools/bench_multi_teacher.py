#!/usr/bin/env python
"""Two teachers against the best single one on BCCD (KD.TEACHERS, Chen et al.'s recipe):
a second teacher of configs/BCCD/teacher.yaml (SEED 1), the better of the two on bccd_val
as the single teacher, then per seed the student distilled from it and from both, trained
on bccd_trainval and tested on bccd_test. Reuses tools/bench_accuracy.py's finished
stages (teacher, baseline and kd test runs); resumable.

    python tools/bench_multi_teacher.py --jobs 2 --threads 1
    # baseline and single-teacher rows from bench_accuracy's results (same teacher):
    python tools/bench_multi_teacher.py --jobs 2 --threads 1 --carry-over results/bccd_accuracy.json
    # -> results/bccd_multi_teacher.{json,png}
"""
import argparse
import json
import os
import sys

from kd_det.benchmarks.detection import compare_teachers, role_configs
from kd_det.benchmarks.machine import machine_info
from kd_det.benchmarks.orchestrator import add_run_arguments, apply_run_arguments
from kd_det.benchmarks.report import Bars, save_report
from kd_det.data import use_dataset_root

SHARED_BCCD = os.path.join("..", "shared", "data", "BCCD")


def _read(path):
    if not path:
        return None
    with open(path) as f:
        return json.load(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("KD_DET_BCCD_ROOT", ""),
                        help=f"BCCD root; default $KD_DET_BCCD_ROOT, else {SHARED_BCCD}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--single-dir", default="output/bench_bccd",
                        help="tools/bench_accuracy.py's work dir (its stages are reused)")
    parser.add_argument("--carry-over", default="", metavar="JSON",
                        help="tools/bench_accuracy.py's results: its baseline and kd rows are "
                             "used instead of rerunning them (refused unless its teacher's "
                             "test AP equals this teacher's)")
    parser.add_argument("--work-dir", default="output/bench_bccd_multi")
    parser.add_argument("--output", default="results/bccd_multi_teacher.json")
    add_run_arguments(parser)
    args = parser.parse_args()
    apply_run_arguments(args)
    args.data = use_dataset_root("KD_DET_BCCD_ROOT", args.data, SHARED_BCCD)
    results = compare_teachers(role_configs("configs/BCCD"), args.work_dir, args.single_dir,
                               args.seeds, ("bccd_trainval", "bccd_test"), jobs=args.jobs,
                               previous=_read(args.carry_over))
    if args.carry_over:
        results["protocol"]["carried_over_from"] = args.carry_over
    results["command"] = " ".join(["python"] + sys.argv)
    results["machine"] = machine_info()
    rows = ("teacher", "baseline", "kd_single", "kd_two_teachers")
    panels = [Bars(f"test {m} (mean ± std, dots: seeds)", {r: results[r][m] for r in rows},
                   fmt=".1f", zoom=True) for m in ("AP", "AP50")]
    png = os.path.splitext(args.output)[0] + ".png"
    save_report(results, args.output, png, panels, "BCCD: one teacher vs two (Chen et al.)")
    for r in rows:
        print(f"{r:16s} AP50 {results[r]['AP50']}  AP {results[r]['AP']}")
    print(f"wrote {args.output} and {png}")


if __name__ == "__main__":
    main()
