#!/usr/bin/env python
"""Speed of a DistillRCNN step against its floor (student step + the teacher work KD needs)
and against a naive KD step that runs the teacher's whole inference; prints and writes JSON.

    OMP_NUM_THREADS=1 python tools/bench_speed.py                      # CPU, builtin pair
    python tools/bench_speed.py --device cuda --amp --output results/speed_gpu_amp.json

The pair is a DistillRCNN config (the student, and the teacher in KD.TEACHER.CONFIG_FILE),
randomly initialised unless --teacher-weights is given: no weights are downloaded.
"""
import argparse
import json
import shlex
import sys

import torch

import kd_det  # noqa: F401  (registers DistillRCNN and the MobileNetV2 backbone)
from kd_det.benchmarks.detection import load_cfg
from kd_det.benchmarks.machine import code_version
from kd_det.benchmarks.speed import run_speed_bench
from kd_det.file_io import save_json


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default="configs/builtin/kd.yaml",
                   help="a DistillRCNN config: the student, and its teacher's config file")
    p.add_argument("--teacher-weights", default="",
                   help="trained teacher weights (default: a random teacher)")
    p.add_argument("--size", type=int, default=256, help="image side in pixels")
    p.add_argument("--batch", type=int, default=4, help="images per step")
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", action="store_true",
                   help="autocast: float16 + GradScaler on CUDA, bfloat16 on CPU")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: the machine is shared, see README)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=15, help="timed rounds (median of each step)")
    p.add_argument("--teachers", type=int, default=1,
                   help="distil from this many teachers (KD.TEACHERS), each of the config's "
                        "teacher architecture")
    p.add_argument("--profile-terms", action="store_true",
                   help="also time the KD step without each term: what each term costs")
    p.add_argument("--output", default="results/speed_cpu.json")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    cfg = load_cfg(args.config_file, ["MODEL.DEVICE", args.device] + args.opts)
    out = run_speed_bench(cfg, args.size, args.batch, args.amp, args.warmup, args.iters,
                          args.teacher_weights, args.teachers, args.profile_terms)
    out["config_file"] = args.config_file
    out["command"] = shlex.join(["python", "tools/bench_speed.py", *argv])
    out.update(code_version())
    save_json(args.output, out)
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
