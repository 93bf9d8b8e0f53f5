#!/usr/bin/env python
"""Accuracy benchmark of a compression pair on BCCD (PASCAL VOC layout; configs/BCCD: a 4x
lighter student; configs/BCCD_halfres: that student at half the teacher's input
resolution) or on Aquarium (COCO json, Roboflow, CC BY 4.0; configs/Aquarium):
teacher, baseline student, Chen et al.'s recipe (kd) and kd_det's best recipe (kd_best).

Hyper-parameters are chosen on <set>_train -> <set>_val (learning curves, KD diagnostics,
and the options one at a time); test numbers come from <set>_trainval -> <set>_test over
every seed. Finished stages are cached and interrupted ones resume, so the benchmark can
be run in parts (the teacher too: it resumes from its last checkpoint).

    python tools/bench_accuracy.py --jobs 2 --threads 1
    python tools/bench_accuracy.py --jobs 2 --threads 1 --configs configs/BCCD_halfres \
        --work-dir output/bench_bccd_halfres --teacher-dir output/bench_bccd/teacher \
        --output results/bccd_halfres_accuracy.json
    python tools/bench_accuracy.py --quick          # smoke run: short schedule, 1 seed
    python tools/bench_accuracy.py --dataset aquarium --jobs 2 --threads 1
    # a row added later, the rest carried over from earlier results of the same teacher:
    python tools/bench_accuracy.py --jobs 2 --threads 1 --rows kd_best \
        --carry-over results/bccd_accuracy.json results/bccd_selection.json
"""
import argparse
import json
import os
import sys

from kd_det.benchmarks.detection import (
    choose_kd_best,
    compare,
    format_table,
    kd_best_yaml,
    load_cfg,
    read_curve,
    role_configs,
    write_report,
)
from kd_det.benchmarks.machine import machine_info
from kd_det.benchmarks.orchestrator import add_run_arguments, apply_run_arguments
from kd_det.data import use_dataset_root

# Per dataset: its registered name prefix, the environment variable of its root, where
# the shared copy sits, and the benchmark's default configs, work folder and results.
DATASETS = {
    "bccd": dict(env="KD_DET_BCCD_ROOT", shared=os.path.join("..", "shared", "data", "BCCD"),
                 configs="configs/BCCD",
                 options=("inherit", "pkd_hint", "gt_mask_hint", "warmup")),
    # A KD run costs ~3x a baseline here (the teacher at 480 px): the search keeps the
    # options the BCCD diagnosis points to, and searches the hint's weight.
    "aquarium": dict(env="KD_DET_AQUARIUM_ROOT",
                     shared=os.path.join("..", "shared", "data", "aquarium"),
                     configs="configs/Aquarium",
                     options=("inherit", "pkd_hint", "pkd_hint_x4", "hint_x4"),
                     quick_size=96),  # --quick: the teacher at 96 px, fast enough for CI
}


def _quick_sizes(size, role):
    """INPUT.* overrides of --quick: the teacher's (and the KD runs') short side `size`,
    the baseline student's half of it, as in the pair; none when `size` is None."""
    if not size:
        return []
    size = size // 2 if role == "student" else size
    return ["INPUT.MIN_SIZE_TRAIN", f"({size},)", "INPUT.MAX_SIZE_TRAIN", size * 16 // 9,
            "INPUT.MIN_SIZE_TEST", size, "INPUT.MAX_SIZE_TEST", size * 16 // 9]

# The options beyond Chen et al., each added alone to Chen's recipe (<configs>/kd.yaml)
# and scored on the validation split: the search that kd_best.yaml is chosen by.
OPTIONS = {
    # FGD (CVPR 2022) inheriting strategy: the student's MobileNetV2 starts as the teacher's.
    "inherit": ["KD.STUDENT.INIT_FROM_TEACHER", True],
    # PKD (NeurIPS 2022): Pearson-correlation hint at weight 6 (MMRazor's per level); kd_det
    # averages the hint over its pairs, so this is 4-5x weaker in total than MMRazor's sum.
    "pkd_hint": ["KD.HINT.LOSS", "pkd", "KD.HINT.WEIGHT", 6.0],
    # The PKD hint at MMRazor's total: 4 FPN pairs x 6, averaged here.
    "pkd_hint_x4": ["KD.HINT.LOSS", "pkd", "KD.HINT.WEIGHT", 24.0],
    # Chen's L2 hint summed over the 4 pairs rather than averaged (gamma 0.5 x 4).
    "hint_x4": ["KD.HINT.WEIGHT", 2.0],
    # FGFI (CVPR 2019): imitate only inside ground-truth boxes.
    "gt_mask_hint": ["KD.HINT.MASK", "gt"],
    # Linear warm-up of every KD weight over the first 200 iterations.
    "warmup": ["KD.WARMUP_ITERS", 200],
}

TITLES = {"configs/Aquarium": "Aquarium (Roboflow, CC BY 4.0): MobileNetV2-FPN128 teacher at "
                             "480 px -> FPN32 student at 240 px",
          "configs/BCCD": "BCCD: MobileNetV2-FPN128 teacher -> FPN32 student",
          "configs/BCCD_halfres": "BCCD: MobileNetV2-FPN128 teacher -> FPN32 student at half "
                                  "resolution",
          "configs/BCCD_quarterres": "BCCD: MobileNetV2-FPN128 teacher -> FPN32 student at a "
                                     "quarter of its resolution"}

SELECTION_KEYS = ("validation", "validation_gap_closed", "ablation", "curves",
                  "time_to_accuracy", "diagnostics", "pair_check")


def carry_selection(results, previous):
    """The selection part of `previous`, as it was measured (with its own teacher run). A
    kd_best there of other settings than today's is replaced by the search run of today's
    settings when there is one (its val AP; its curve and diagnostics were not kept)."""
    for key in SELECTION_KEYS:
        results[key] = json.loads(json.dumps(previous.get(key, {})))
    results["protocol"]["selection"] = previous["protocol"]["selection"] + (
        " (carried over: an earlier run of the same teacher config)")
    settings = results.get("kd_best_settings")
    if settings is None or previous.get("kd_best_settings") == settings:
        return
    for key in SELECTION_KEYS:
        results[key].pop("kd_best", None)
    for name, option in OPTIONS.items():
        if dict(zip(option[::2], option[1::2])) == settings and name in results["ablation"]:
            val = results["validation"]
            val["kd_best"] = results["ablation"][name]
            results["validation_gap_closed"]["kd_best"] = {
                m: (val["kd_best"][f"{m}_stats"]["mean"] - val["baseline"][f"{m}_stats"]["mean"])
                / (val["teacher"][f"{m}_stats"]["mean"] - val["baseline"][f"{m}_stats"]["mean"])
                for m in ("AP50", "AP")}
            results["protocol"]["selection_kd_best"] = (
                f"kd_best's settings are the search's {name!r} run: its val AP is that run's")


def write_kd_best(results_json, folder):
    """<folder>/kd_best.yaml from the selection results, by choose_kd_best."""
    path = os.path.join(folder, "kd_best.yaml")
    if os.path.exists(path):
        sys.exit(f"{path} exists: it was chosen already (delete it to choose again)")
    with open(results_json) as f:
        results = json.load(f)
    name, _ = choose_kd_best(results, OPTIONS)
    if name is None:
        sys.exit("no searched option beats Chen's recipe on val: kd_best is Chen's recipe "
                 "(the kd row); no kd_best.yaml written, so no second copy of it is trained")
    kd_dir = load_cfg(os.path.join(folder, "kd.yaml")).OUTPUT_DIR
    text = kd_best_yaml(results, OPTIONS, os.path.join(os.path.dirname(kd_dir), "kd_best"))
    with open(path, "w") as f:
        f.write(text)
    print(text + f"\nwrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=list(DATASETS), default="bccd",
                        help="the benchmark's dataset: its splits, default configs, work "
                             "folder and results file")
    parser.add_argument("--data", default="",
                        help="the dataset's root; default $KD_DET_BCCD_ROOT / "
                             "$KD_DET_AQUARIUM_ROOT, else ../shared/data/<set> when it "
                             "exists, else $DETECTRON2_DATASETS/<set>")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--val-seeds", type=int, default=1,
                        help="how many of --seeds the selection (train -> val) runs use")
    parser.add_argument("--options", nargs="*", default=None, choices=list(OPTIONS),
                        help="options of the validation search (default: the dataset's)")
    parser.add_argument("--selection-only", action="store_true",
                        help="run the teacher and the selection (train -> val) stages only")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 seed, 20 iterations, no option search")
    parser.add_argument("--rows", nargs="+", choices=["baseline", "kd", "kd_best"],
                        help="student rows to run (default: all); the others, and the option "
                             "search unless --options is given, come from --carry-over")
    parser.add_argument("--carry-over", nargs="+", default=[], metavar="JSON",
                        help="earlier results of this benchmark (later files override earlier "
                             "ones) for the rows not run; refused unless the teacher's test AP "
                             "equals theirs")
    parser.add_argument("--test-only", action="store_true",
                        help="no selection runs: the selection part (validation runs, option "
                             "search, curves, diagnostics) is carried over from --carry-over")
    parser.add_argument("--configs", default="",
                        help="folder of teacher.yaml, student.yaml, kd.yaml[, kd_best.yaml] "
                             "(default configs/BCCD or configs/Aquarium)")
    parser.add_argument("--teacher-dir", default="",
                        help="the teacher stage's folder (default <work-dir>/teacher); a pair "
                             "of the same teacher config reuses its trained teacher")
    parser.add_argument("--work-dir", default="", help="default output/bench_<set>")
    parser.add_argument("--output", default="",
                        help="results JSON (default results/<set>_accuracy.json, or "
                             "results/<set>_selection.json with --selection-only)")
    parser.add_argument("--write-kd-best", default="", metavar="JSON",
                        help="write <configs>/kd_best.yaml from these selection results by "
                             "the fixed rule (choose_kd_best) and stop; refused when the file "
                             "exists")
    parser.add_argument("--stages", default="", metavar="REGEX",
                        help="train only the stages whose names match (e.g. 'baseline' while "
                             "another process trains the teacher); no report is written")
    add_run_arguments(parser)
    args = parser.parse_args()
    apply_run_arguments(args)
    spec, ds = DATASETS[args.dataset], args.dataset
    args.configs = args.configs or spec["configs"]
    args.work_dir = args.work_dir or f"output/bench_{ds}"
    configs = role_configs(args.configs)
    if args.write_kd_best:
        write_kd_best(args.write_kd_best, args.configs)
        return
    args.output = args.output or (f"results/{ds}_selection.json" if args.selection_only
                                  else f"results/{ds}_accuracy.json")
    args.data = use_dataset_root(spec["env"], args.data, spec["shared"])
    opts, seeds = {}, args.seeds
    if args.options is None:  # all, unless the search is carried over
        args.options = [] if args.rows else list(spec["options"])
    options = {name: OPTIONS[name] for name in args.options}
    previous = {}
    for path in args.carry_over:
        with open(path) as f:
            previous.update(json.load(f))
    if args.quick:
        # One evaluation per stage (at its end), few proposals: a smoke run of every stage.
        short = ["SOLVER.MAX_ITER", 20, "SOLVER.STEPS", "()", "TEST.EVAL_PERIOD", 20,
                 "SOLVER.CHECKPOINT_PERIOD", 100000, "KD.TEACHER.EVAL_BEFORE_TRAIN", False,
                 "MODEL.RPN.POST_NMS_TOPK_TEST", 100]
        opts = {role: short + _quick_sizes(spec.get("quick_size"), role) for role in configs}
        options, seeds = {}, seeds[:1]
        args.work_dir += "_quick"
        args.teacher_dir = ""  # the quick run trains its own short teacher
        args.output = os.path.join(args.work_dir, "results.json")
    args.teacher_dir = args.teacher_dir or os.path.join(args.work_dir, "teacher")
    if args.test_only and not previous.get("validation"):
        parser.error("--test-only needs --carry-over results with a selection part")
    val_split = None if args.test_only else (f"{ds}_train", f"{ds}_val")
    results = compare(configs, args.work_dir, seeds, val_split=val_split,
                      test_split=(f"{ds}_trainval", f"{ds}_test"), opts=opts, ablations=options,
                      diagnostics_period=10 if args.quick else 50, jobs=args.jobs,
                      timing_images=3 if args.quick else 20,
                      selection_only=args.selection_only, run_rows=args.rows,
                      previous=previous, teacher_dir=args.teacher_dir,
                      val_seeds=args.val_seeds, stage_filter=args.stages)
    if args.stages:
        print("trained or cached:", ", ".join(results["stages"]))
        return
    if args.carry_over:
        results["protocol"]["carried_over_from"] = args.carry_over
    if args.test_only:
        carry_selection(results, previous)
        # this run's teacher, beside the carried curves of the selection's teacher
        results["curves"]["teacher_this_run"] = read_curve(args.teacher_dir)
    results["command"] = " ".join(["python"] + sys.argv)
    results["machine"] = machine_info()
    png = os.path.splitext(args.output)[0] + ".png"
    write_report(results, args.output, png, TITLES.get(os.path.normpath(args.configs),
                                                        f"{ds}: {args.configs}"))
    print(format_table(results))
    print(f"\nwrote {args.output} and {png}")


if __name__ == "__main__":
    main()
