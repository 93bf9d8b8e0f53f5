#!/usr/bin/env python
"""The main job (`make demo`): on kd_det's built-in dataset, train a teacher once, then a
baseline student and a distilled student with the identical schedule over 3 seeds,
evaluate them, time teacher and student on the CPU, print a table (mean +- std and the
per-seed values) and write output/demo/results.{json,png}.

Re-running reuses the finished stages.
"""
import argparse
import os
import sys
import time

from kd_det.benchmarks.detection import compare, format_table, role_configs, write_report
from kd_det.benchmarks.machine import machine_info
from kd_det.benchmarks.orchestrator import add_run_arguments, apply_run_arguments

CONFIGS = role_configs("configs/builtin")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="output/demo")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_run_arguments(parser)
    args = parser.parse_args()
    apply_run_arguments(args)
    start = time.perf_counter()
    results = compare(CONFIGS, args.output, seeds=args.seeds,
                      test_split=("kd_builtin_train", "kd_builtin_val"), jobs=args.jobs)
    results["command"] = " ".join([os.path.basename(sys.executable)] + sys.argv)
    # This run's wall-clock: the whole demo when no stage was cached.
    results["wall_seconds"] = time.perf_counter() - start
    results["machine"] = machine_info()
    write_report(results, os.path.join(args.output, "results.json"),
                 os.path.join(args.output, "results.png"),
                 "kd_det demo: built-in dataset, 2 CPU cores")
    print(format_table(results))
    print(f"\nwrote {args.output}/results.json and {args.output}/results.png")


if __name__ == "__main__":
    main()
