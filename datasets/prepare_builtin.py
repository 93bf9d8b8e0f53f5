#!/usr/bin/env python
"""Generate kd_det's built-in synthetic dataset (kd_builtin_train / kd_builtin_val).

Training generates it on first use anyway; this does it up front. With no options it writes
the set that kd_builtin_* are registered with, under $DETECTRON2_DATASETS/kd_builtin; other
settings need their own --root, and are used by registering them from Python:
    kd_det.data.register_builtin("my_shapes", root, kd_det.data.BuiltinSpec(...))
"""
import argparse
import dataclasses
import logging
import os
import sys
import time

from kd_det.data import BuiltinSpec, builtin_root, prepare_builtin


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help=f"output folder (default {builtin_root()})")
    for field in dataclasses.fields(BuiltinSpec):
        parser.add_argument("--" + field.name.replace("_", "-"), type=int, default=field.default)
    parser.add_argument("--force", action="store_true", help="regenerate even if up to date")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    spec = BuiltinSpec(**{f.name: getattr(args, f.name) for f in dataclasses.fields(BuiltinSpec)})
    root = args.root or builtin_root()
    if spec != BuiltinSpec() and os.path.abspath(root) == os.path.abspath(builtin_root()):
        sys.exit(f"--root: {root} holds the registered kd_builtin set, which uses the default "
                 "settings; give another --root for a set with other settings.")
    start = time.perf_counter()
    root = prepare_builtin(root, spec, force=args.force)
    print(f"kd_det built-in dataset ({spec}) ready in {root} "
          f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
