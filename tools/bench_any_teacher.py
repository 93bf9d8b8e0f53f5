#!/usr/bin/env python
"""Distilling from the teacher you have, on Aquarium (Roboflow, CC BY 4.0): two pairs,
each run by tools/bench_accuracy.py's protocol (kd_det.benchmarks.detection.compare:
selection runs train -> val, test runs trainval -> test over every seed, cached and
resumable stages) and each against its own student's baseline:

- label_space: the 7-class Aquarium teacher (bench_accuracy's stage, reused) distils a
  student of --classes (default fish, jellyfish, shark). The student's datasets are class
  subsets of aquarium_* (register_class_subset, what --dataset-subset does on the training
  tools); the teacher is mapped to them by class name (KD.TEACHER.CLASS_MAP) and scored on
  them through that map.
- backbone: an EfficientNet-Lite0-FPN teacher (configs/Aquarium/teacher_effl0.yaml, trained
  here) distils the MobileNetV2-FPN student; the baselines are bench_accuracy's stages.

    OMP_NUM_THREADS=1 python tools/bench_any_teacher.py --jobs 2 --threads 1
    # one pair, or some stages (e.g. the baselines while another process trains a teacher):
    python tools/bench_any_teacher.py --pairs label_space --stages baseline
    # -> results/aquarium_any_teacher.{json,png}

Do not run a pair while bench_accuracy trains its teacher: label_space would train the same
stage. Give --stages to leave the teacher out.
"""
import argparse
import os
import sys

from kd_det.benchmarks.detection import compare, role_configs
from kd_det.benchmarks.machine import machine_info
from kd_det.benchmarks.orchestrator import add_run_arguments, apply_run_arguments
from kd_det.benchmarks.report import Bars, save_report
from kd_det.data import AQUARIUM_SPLITS, register_class_subset, use_dataset_root

SHARED = os.path.join("..", "shared", "data", "aquarium")
CONFIGS = "configs/Aquarium"
TITLE = "Aquarium (Roboflow, CC BY 4.0): distilling from the teacher you have"


def subset_name(split: str, classes) -> str:
    """aquarium_<classes>_<split>: named by its classes, so that stages of another class
    set never share its cached records or evaluations."""
    return f"aquarium_{'_'.join(classes)}_{split}"


def register_subsets(classes) -> None:
    """The student's sets, cut from aquarium_{train,val,trainval,test}. Also run in each
    worker process (the orchestrator's setup)."""
    for split in AQUARIUM_SPLITS:
        register_class_subset(subset_name(split, classes), f"aquarium_{split}", classes)


def pairs(classes, work_dir: str, accuracy_dir: str):
    """{pair: compare() keyword arguments}."""
    roles = {r: p for r, p in role_configs(CONFIGS).items() if r != "kd_best"}
    k = ["MODEL.ROI_HEADS.NUM_CLASSES", len(classes)]
    return {
        "label_space": dict(
            configs=roles, output_dir=os.path.join(work_dir, "label_space"),
            teacher_dir=os.path.join(accuracy_dir, "teacher"),
            val_split=(subset_name("train", classes), subset_name("val", classes)),
            test_split=(subset_name("trainval", classes), subset_name("test", classes)),
            opts={"student": k, "kd": k}, setup=(register_subsets, (list(classes),))),
        "backbone": dict(
            configs=dict(roles, teacher=os.path.join(CONFIGS, "teacher_effl0.yaml")),
            output_dir=os.path.join(work_dir, "backbone"),
            teacher_dir=os.path.join(work_dir, "teacher_effl0"), baseline_dir=accuracy_dir,
            val_split=("aquarium_train", "aquarium_val"),
            test_split=("aquarium_trainval", "aquarium_test")),
    }


def panels(results):
    """Per pair: teacher, baseline and distilled AP (test when it ran, else val)."""
    out = []
    for name, r in results["pairs"].items():
        src, split = (r, "test") if "baseline" in r else (r["validation"], "val")
        out.append(Bars(f"{name}: {split} AP (mean ± std, dots: seeds)",
                        {row: src[row]["AP"] for row in ("teacher", "baseline", "kd")},
                        fmt=".1f"))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("KD_DET_AQUARIUM_ROOT", ""),
                        help=f"Aquarium root; default $KD_DET_AQUARIUM_ROOT, else {SHARED}")
    parser.add_argument("--pairs", nargs="+", choices=["label_space", "backbone"],
                        default=["label_space", "backbone"])
    parser.add_argument("--classes", nargs="+", default=["fish", "jellyfish", "shark"],
                        help="the label_space student's classes (Aquarium class names)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--val-seeds", type=int, default=2)
    parser.add_argument("--selection-only", action="store_true",
                        help="the teachers and the selection (train -> val) stages only")
    parser.add_argument("--accuracy-dir", default="output/bench_aquarium",
                        help="tools/bench_accuracy.py --dataset aquarium's work dir: its "
                             "teacher and baselines are reused")
    parser.add_argument("--work-dir", default="output/bench_any_teacher")
    parser.add_argument("--output", default="results/aquarium_any_teacher.json")
    parser.add_argument("--stages", default="", metavar="REGEX",
                        help="train only the stages whose names match; no report is written")
    add_run_arguments(parser)
    args = parser.parse_args()
    apply_run_arguments(args)
    args.data = use_dataset_root("KD_DET_AQUARIUM_ROOT", args.data, SHARED)
    register_subsets(args.classes)
    results = {"protocol": {
        "label_space": f"7-class teacher -> student of {args.classes} (class map by name)",
        "backbone": "EfficientNet-Lite0-FPN teacher -> MobileNetV2-FPN student"}, "pairs": {}}
    for name, kwargs in pairs(args.classes, args.work_dir, args.accuracy_dir).items():
        if name not in args.pairs:
            continue
        r = compare(seeds=args.seeds, val_seeds=args.val_seeds, jobs=args.jobs,
                    selection_only=args.selection_only, stage_filter=args.stages,
                    diagnostics_period=50, **kwargs)
        if args.stages:
            print(f"{name}: trained or cached:", ", ".join(r["stages"]))
            continue
        results["pairs"][name] = r
    if args.stages:
        return
    results["command"] = " ".join(["python"] + sys.argv)
    results["machine"] = machine_info()
    png = os.path.splitext(args.output)[0] + ".png"
    save_report(results, args.output, png, panels(results), TITLE)
    print(f"wrote {args.output} and {png}")


if __name__ == "__main__":
    main()
