#!/usr/bin/env python
"""CPU inference of the teacher and the distilled student at batch 1: eager PyTorch,
TorchScript and ONNX Runtime (CPU execution provider), with 1 and 2 threads; latency
median and p90, throughput and peak RSS, each (model, format, threads) in its own process.
Writes results/deploy_cpu.json (with the commit and the machine) and .png, and prints the
README table.

    python tools/bench_deploy.py            # the full run: 36 timing processes, ~5 min
    python tools/bench_deploy.py --quick    # a smoke run (output/bench_deploy_quick)
    python tools/bench_deploy.py --student-config configs/BCCD/kd.yaml \
        --student-weights output/bccd/kd/model_final.pth \
        --teacher-config configs/BCCD/teacher.yaml \
        --teacher-weights output/bccd/teacher/model_final.pth --ap-dataset bccd_test

Without weights a model is randomly initialised: speed does not depend on trained values
(the number of detections aside, which the JSON records). Every export is checked against
eager on the benchmark image before it is timed.
"""
import argparse
import os
import shlex
import sys

from kd_det.benchmarks.deploy import (
    FORMATS,
    bench_image,
    deploy_table,
    exported_ap,
    headline,
    panels,
    prepare,
    run_rows,
)
from kd_det.benchmarks.machine import machine_info
from kd_det.benchmarks.report import save_report
from kd_det.deploy.runtime import require_deploy_extra


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher-config", default="configs/builtin/teacher.yaml")
    p.add_argument("--teacher-weights", default="", help="default: random initialisation")
    p.add_argument("--student-config", default="configs/builtin/kd.yaml",
                   help="a DistillRCNN config (its student) or a GeneralizedRCNN config")
    p.add_argument("--student-weights", default="", help="default: random initialisation")
    p.add_argument("--formats", nargs="+", default=None, choices=FORMATS,
                   help="default: all three (onnx only with the deploy extra installed)")
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--rounds", type=int, default=3, help="processes per (model, format, threads)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=30, help="timed images per process")
    p.add_argument("--quick", action="store_true",
                   help="1 thread, 1 round of 2 + 3 images; written to output/bench_deploy_quick")
    p.add_argument("--ap-dataset", default="",
                   help="also evaluate the student eager and exported on this registered "
                        "dataset (e.g. bccd_test): the exports' AP must equal eager's")
    p.add_argument("--work-dir", default="", help="exports and inputs (default: beside --output)")
    p.add_argument("--output", default="", help="default results/deploy_cpu.json")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    if args.formats is None:
        args.formats = list(FORMATS)
        try:
            require_deploy_extra()
        except ImportError as e:
            args.formats.remove("onnx")
            print(f"bench_deploy: without ONNX Runtime: {e}", file=sys.stderr)
    if args.quick:
        args.threads, args.rounds, args.warmup, args.iters = [1], 1, 2, 3
    output = args.output or ("output/bench_deploy_quick/deploy_cpu.json" if args.quick
                             else "results/deploy_cpu.json")
    work = args.work_dir or os.path.join("output", "bench_deploy_quick" if args.quick
                                         else "bench_deploy")
    os.makedirs(work, exist_ok=True)
    image = bench_image(os.path.join(work, "bench_image.png"))
    models = {"teacher": prepare("teacher", args.teacher_config, args.teacher_weights, work,
                                 image, args.formats),
              "student": prepare("student", args.student_config, args.student_weights, work,
                                 image, args.formats)}
    before = machine_info()
    rows = run_rows(models, args.formats, args.threads, args.rounds, args.warmup, args.iters)
    results = {
        "command": shlex.join(["python", "tools/bench_deploy.py", *argv]),
        "quick": args.quick, "batch_size": 1, "rounds": args.rounds, "warmup": args.warmup,
        "iters": args.iters, "machine": before,
        "load_avg_1min_after": machine_info()["load_avg_1min"],
        "models": {m: {"config_file": v["config_file"], "input_hw": v["input_hw"],
                       "random_weights": not getattr(args, f"{m}_weights")}
                   for m, v in models.items()},
        "headline": headline(rows), "rows": rows}
    if args.ap_dataset:
        ap = exported_ap(models["student"], args.ap_dataset, os.path.join(work, "eval"))
        results.update(ap_dataset=args.ap_dataset, student_ap=ap, ap_max_abs_diff=max(
            abs(v[k] - ap["eager"][k]) for v in ap.values() for k in ("AP", "AP50")))
    png = os.path.splitext(output)[0] + ".png"
    save_report(results, output, png, panels(rows),
                title=f"CPU inference, batch 1 ({before['cpu']})")
    print(deploy_table(results))
    for t, h in results["headline"].items():
        print(f"{t} thread(s): teacher eager / student {h['student_best_format']} = "
              f"{h['teacher_eager_over_student_best']:.2f}x")
    print(f"wrote {output} and {png}")
    return results


if __name__ == "__main__":
    main()
