#!/usr/bin/env python
"""The main job (`make demo`): on kd_det's built-in dataset, train a teacher, a baseline
student and a distilled student with the identical schedule, evaluate all three, time
them on the CPU, print a table and write output/demo/results.{json,png}.

Re-running reuses the finished stages.
"""
import argparse
import os
import sys

import torch

from kd_det.engine.protocol import compare, format_table, write_report

CONFIGS = {
    "teacher": "configs/builtin/teacher.yaml",
    "student": "configs/builtin/student.yaml",
    "kd": "configs/builtin/kd.yaml",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="output/demo")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (default: all cores); use 1 on a busy machine, "
                             "where OpenMP threads competing for cores slow training many-fold")
    parser.add_argument("--jobs", type=int, default=1,
                        help="student trainings run in parallel (1 torch thread each)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = compare(CONFIGS, args.output, seeds=[0], jobs=args.jobs)
    results["command"] = " ".join([os.path.basename(sys.executable)] + sys.argv)
    write_report(results, os.path.join(args.output, "results.json"),
                 os.path.join(args.output, "results.png"),
                 "kd_det demo: built-in dataset, 2 CPU cores")
    print(format_table(results))
    print(f"\nwrote {args.output}/results.json and {args.output}/results.png")


if __name__ == "__main__":
    main()
