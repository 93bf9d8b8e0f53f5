"""The PISR benchmark at one scale: validation search, plateau schedule, test once over seeds.

- Splits: SR.DATA.VAL_EVERY holds every 8th CSun_Hays80 image (10 of 80, by name) out of
  training; validation is the PSNR of their centred 288-px squares. Set5 and Set14 are the
  test sets, reported for the chosen setting only.
- Networks: FSRCNN (12,644 parameters) with global bicubic skips (SR.RESIDUAL) and its
  deconvolution centred on the LR pixels; the PISR teacher puts its encoder in front of
  the same network. The teacher sees HR: its PSNR is a reference, not a competitor.
- One schedule for every run (teacher, FSRCNN, PISR student): `iters` iterations of the
  configs' optimizer and batches; validation PSNR, each loss and its gradient norm on the
  SR network every SR.VAL_PERIOD iterations and at 0 (the curves).
- Search: PISR's two weights crossed, the paper's first (SEARCH). One teacher per
  imitation weight and one student per candidate, with the first seed; the best final
  validation PSNR wins (pick_best; ties to the paper's). The winner's run is the first
  seed of the test row; the other seeds distil from the same teacher.
- Test: bicubic, FSRCNN and the PISR student over the seeds (per seed, mean, sample std,
  and the paired per-seed differences: a student and its FSRCNN share the seed, hence
  the data order), with the chosen teacher as a reference.
- Diagnostics: every run's curve; the teacher's PSNR; the student's point at iteration 0
  is the teacher's decoder on real LR, which PISR hands to the student.
"""
import hashlib
import math
import os
import time
from typing import Dict, List, Sequence, Tuple

from ..auxiliary.sr import SRTrainer
from ..auxiliary.sr.trainer import evaluate_bicubic
from ..file_io import save_json
from .orchestrator import Stage, config_fingerprint, pick_best, run_report, run_stages
from .report import Bars, Curves, mean_spread, mean_std

__all__ = ["CONFIGS", "ROWS", "SEARCH", "evaluate_bicubic_stage", "markdown_table",
           "quick_settings", "run_benchmark"]

CONFIGS = {"teacher": "PISR-teacher-x{}.yaml", "baseline": "FSRCNN-x{}.yaml",
           "student": "PISR-student-x{}.yaml"}
ROWS = {
    "bicubic": "Bicubic",
    "baseline": "FSRCNN (baseline)",
    "student": "FSRCNN + PISR (student)",
    "teacher": "PISR teacher (sees HR: reference)",
}
# The validation search: label -> (SR.TEACHER.IMITATION_WEIGHT, SR.KD.VID_WEIGHT), both
# weights crossed, the official PISR FSRCNN configs' 1e-4 and 1e-6 first. Measured on
# 800-iteration probes: at 1e-4 the imitation term's gradient on the teacher is ~1/500 of
# the L1 term's and the encoder drifts from the real LR; 1e-1 (twice the L1 term's) holds
# it to the real LR, so that the decoder the student inherits has learnt on LR-like
# inputs. VID at 1e-6 gives the student ~1e-4 of the L1 term's gradient; 1e-3 gives it
# about as much as the L1 term (1e-2 gave it 20x and lowered val PSNR).
SEARCH: Dict[str, Tuple[float, float]] = {
    "imit1e-4_vid1e-6": (1e-4, 1e-6),
    "imit0.1_vid1e-6": (0.1, 1e-6),
    "imit1e-4_vid1e-3": (1e-4, 1e-3),
    "imit0.1_vid1e-3": (0.1, 1e-3),
}
_TEST_ROWS = ("baseline", "student")


def quick_settings() -> Dict:
    """The smoke run of --quick: every stage of the pipeline with a few iterations on
    small patches and crops, Set5 alone as the test set (seconds per stage)."""
    return {"iters": 4, "opts": [
        "SR.DATA.PATCH_SIZE", "24", "DATALOADER.BATCH_SIZE", "2", "SR.VAL_PERIOD", "2",
        "SR.DATA.VAL_CROP", "48", "SR.TEACHER.ENCODER_WIDTH", "8", "SOLVER.LOG_PERIOD", "2",
        "SR.DATA.TEST_DIRS", "('../shared/data/sr/CSet5',)"]}


def evaluate_bicubic_stage(cfg, resume: bool = False) -> Dict[str, float]:
    """A stage that trains nothing: bicubic upscaling on cfg's validation and test sets."""
    return evaluate_bicubic(cfg)


def _per_set(metrics: Dict) -> Dict[str, Dict[str, float]]:
    out: Dict[str, Dict[str, float]] = {}
    for key, value in metrics.items():
        if "/" in key:
            name, metric = key.split("/")
            out.setdefault(name, {})[metric] = value
    return out


class _Plan:
    """The benchmark's stages, added phase by phase (the test seeds need the winner)."""

    def __init__(self, config_dir, output_root, scale, seeds, iters, opts):
        self.config_dir, self.output_root, self.scale = config_dir, output_root, scale
        self.seeds, self.iters, self.opts = list(seeds), iters, [str(o) for o in opts]
        self.stages: List[Stage] = []
        self.by_name: Dict[str, Stage] = {}
        self.rows: Dict[str, Dict[int, str]] = {row: {} for row in _TEST_ROWS}
        self.teachers: Dict[float, str] = {}  # imitation weight -> stage
        self.search: Dict[str, str] = {}  # label -> stage
        self.chosen = ""

    def add(self, name: str, mode: str, seed: int, extra=(), after: str = "",
            train=SRTrainer.run) -> str:
        """A stage of `mode`'s config with the common overrides and `extra`; its
        fingerprint covers the teacher it reads (`after`), so that it reruns with it."""
        if name in self.by_name:
            return name
        run_opts = ["SOLVER.MAX_ITER", str(self.iters), *self.opts, "SEED", str(seed),
                    "OUTPUT_DIR", os.path.join(self.output_root, name), *map(str, extra)]
        config = CONFIGS["baseline" if mode == "bicubic" else mode].format(self.scale)
        cfg = SRTrainer.setup_cfg(os.path.join(self.config_dir, config), run_opts)
        key = config_fingerprint(cfg) + (self.by_name[after].key() if after else "")
        stage = Stage(name, cfg, train, (after,) if after else (),
                      hashlib.sha1(key.encode()).hexdigest()[:12])
        self.stages.append(stage)
        self.by_name[name] = stage
        return name

    def teacher(self, imitation: float) -> str:
        name = f"teacher_imit{imitation:g}"
        self.teachers[imitation] = self.add(
            name, "teacher", self.seeds[0], ["SR.TEACHER.IMITATION_WEIGHT", imitation])
        return name

    def student(self, label: str, seed: int) -> str:
        imitation, vid = SEARCH[label]
        teacher = self.teacher(imitation)
        weights = os.path.join(self.output_root, teacher, "model_final.pth")
        return self.add(f"student_{label}_seed{seed}", "student", seed,
                        ["SR.KD.TEACHER_WEIGHTS", weights, "SR.KD.VID_WEIGHT", vid], teacher)

    def choose(self, records) -> None:
        scores = {label: records[name]["val/psnr"] for label, name in self.search.items()}
        self.chosen = pick_best(scores)
        for seed in self.seeds:
            self.rows["student"][seed] = self.student(self.chosen, seed)


def _row(plan: _Plan, records, row: str, sets: Sequence[str]) -> Dict:
    """PSNR / SSIM per set of `row`'s runs: per seed, mean and sample std."""
    done = {seed: name for seed, name in sorted(plan.rows[row].items()) if name in records}
    out: Dict = {"seeds": list(done), "runs": list(done.values()),
                 "train_seconds": [round(records[n]["train_seconds"], 1) for n in done.values()]}
    for s in sets:
        out[s] = {m: {**mean_spread([records[n][f"{s}/{m}"] for n in done.values()]),
                      "per_seed": [records[n][f"{s}/{m}"] for n in done.values()]}
                  for m in ("psnr", "ssim")} if done else {}
    return out


def _paired(a: Dict, b: Dict, sets: Sequence[str]) -> Dict:
    """`a` minus `b` in PSNR per set: per seed (same seed, same data order), and their
    mean and sample std."""
    out = {}
    for s in sets:
        pb = dict(zip(b["seeds"], b[s]["psnr"]["per_seed"]))
        diffs = [v - pb[seed] for seed, v in zip(a["seeds"], a[s]["psnr"]["per_seed"])
                 if seed in pb]
        out[s] = {"per_seed": diffs, **mean_spread(diffs)}
    return out


def _summary(plan: _Plan, protocol: Dict, records, complete: bool) -> Dict:
    bicubic = _per_set(records.get("bicubic", {}))
    sets = list(bicubic)
    test_sets = [s for s in sets if s != "val"]
    out: Dict = {"protocol": protocol, "rows": ROWS, "bicubic": bicubic}
    out["search"] = {
        "rule": "highest final val PSNR of the seed-{} student (pick_best, ties to the "
                "first listed)".format(plan.seeds[0]),
        "candidates": {
            label: {"imitation_weight": SEARCH[label][0], "vid_weight": SEARCH[label][1],
                    "val_psnr": records[name]["val/psnr"],
                    "teacher": plan.teachers[SEARCH[label][0]],
                    "teacher_val_psnr": records[plan.teachers[SEARCH[label][0]]]["val/psnr"]}
            for label, name in plan.search.items() if name in records},
        "chosen": plan.chosen}
    for row in _TEST_ROWS:
        out[row] = _row(plan, records, row, sets)
    teacher = plan.teachers[SEARCH[plan.chosen][0]] if plan.chosen else ""
    if teacher in records:
        out["teacher"] = {"run": teacher, **_per_set(records[teacher])}
    if complete:
        b, s = out["baseline"], out["student"]
        out["comparisons"] = {
            "student - baseline": _paired(s, b, sets),
            **{f"{row} - bicubic": {t: out[row][t]["psnr"]["mean"] - bicubic[t]["psnr"]
                                    for t in sets} for row in _TEST_ROWS}}
        out["diagnostics"] = _diagnostics(plan, records, out)
        out["table_markdown"] = markdown_table(out, test_sets)
    out["curves"] = {name: records[name]["curve"] for name in plan.by_name
                     if name in records and "curve" in records[name]}
    return out


def _diagnostics(plan: _Plan, records, out: Dict) -> Dict:
    """What PISR hands the student and how far each run is from its plateau."""
    def start(name):
        return records[name]["curve"][0]["val/psnr"]

    def last_quarter_gain(name):
        curve = records[name]["curve"]
        at = next(p for p in curve if p["iter"] >= 0.75 * plan.iters)
        return curve[-1]["val/psnr"] - at["val/psnr"]

    runs = {row: list(out[row]["runs"]) for row in _TEST_ROWS}
    return {
        "teacher_val_psnr": out["teacher"]["val"]["psnr"],
        "student_val_psnr_at_iteration_0": {n: start(n) for n in runs["student"]},
        "baseline_val_psnr_at_iteration_0": {n: start(n) for n in runs["baseline"]},
        "val_psnr_gain_over_last_quarter": {n: last_quarter_gain(n)
                                            for n in runs["baseline"] + runs["student"]},
        "note": "iteration 0 of a student is the trained teacher's decoder applied to real "
                "LR; each curve point also holds every loss and its gradient norm on the SR "
                "network (grad_norm/<term>), on the validation crops",
    }


def markdown_table(report: Dict, sets: Sequence[str]) -> str:
    """PSNR / SSIM per test set: mean ± std (n) over seeds, single values otherwise."""
    head = "| method | " + " | ".join(sets) + " |"
    lines = [head, "|---|" + "---|" * len(sets)]
    for row, label in ROWS.items():
        cells = []
        for s in sets:
            r = report[row][s]
            if isinstance(r["psnr"], dict):
                cells.append(f"{mean_std(r['psnr']['per_seed'], 2)} / {r['ssim']['mean']:.4f} "
                             f"(n={r['psnr']['n']})")
            else:
                cells.append(f"{r['psnr']:.2f} / {r['ssim']:.4f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _panels(plan: _Plan, report: Dict) -> List:
    sets = [s for s in report["bicubic"] if s != "val"]
    seed = plan.seeds[0]
    panels = []
    for s in sets:
        base = report["bicubic"][s]["psnr"]
        gains = {ROWS[row].split(" (")[0]: [v - base for v in report[row][s]["psnr"]["per_seed"]]
                 for row in _TEST_ROWS}
        gains["teacher (sees HR)"] = [report["teacher"][s]["psnr"] - base]
        panels.append(Bars(f"{s} x{plan.scale}: test", gains,
                           ylabel="PSNR gain over bicubic (dB)", fmt=".2f"))
    search = {label: [c["val_psnr"]] for label, c in report["search"]["candidates"].items()}
    panels.append(Bars(f"Search (seed {seed}): val PSNR", search, ylabel="dB", fmt=".3f",
                       zoom=True))
    curves = report["curves"]
    shown = {"FSRCNN": plan.rows["baseline"][seed], "PISR student": plan.rows["student"][seed],
             "teacher (sees HR)": report["teacher"]["run"]}
    val = {label: ([p["iter"] for p in curves[n]], [p["val/psnr"] for p in curves[n]])
           for label, n in shown.items()}
    val["bicubic"] = ([0, plan.iters], [report["bicubic"]["val"]["psnr"]] * 2)
    panels.append(Curves(f"Val PSNR (dB), seed {seed}", val, xlabel="iteration"))
    student = curves[shown["PISR student"]]
    # log10: the paper's VID weight gives a gradient ~1e4 times below the L1 term's
    grads = {k.split("/", 1)[1]: ([p["iter"] for p in student],
                                  [math.log10(max(p[k], 1e-12)) for p in student])
             for k in student[0] if k.startswith("grad_norm/")}
    panels.append(Curves(f"PISR student, seed {seed}: log10 grad norm per loss", grads,
                         xlabel="iteration"))
    return panels


def run_benchmark(config_dir: str, output_root: str, json_path: str, png_path: str,
                  seeds: Sequence[int], iters: int, command: str, scale: int = 3,
                  opts: Sequence = (), jobs: int = 2) -> Dict:
    """Bicubic, the teachers and the search students with FSRCNN over every seed, then the
    chosen setting's other seeds; the results JSON (after every stage) and the PNG."""
    if len(seeds) < 2:
        raise ValueError("--seeds: give at least two (the search uses the first; a seed "
                         "spread needs more than one)")
    t0 = time.perf_counter()
    plan = _Plan(config_dir, output_root, scale, seeds, iters, opts)
    ref = SRTrainer.setup_cfg(os.path.join(config_dir, CONFIGS["baseline"].format(scale)),
                              ["SOLVER.MAX_ITER", str(iters), *plan.opts])
    sol, data = ref.SOLVER, ref.SR.DATA
    protocol = {
        "scale": scale,
        "validation": f"every {data.VAL_EVERY}th image of {data.TRAIN_DIR} (sorted) held out "
                      f"of training, centred {data.VAL_CROP}-px squares",
        "test": list(data.TEST_DIRS),
        "schedule": f"{iters} iterations, batch {ref.DATALOADER.BATCH_SIZE} of "
                    f"{data.PATCH_SIZE}-px HR patches, {sol.OPTIMIZER} {sol.BASE_LR} "
                    f"{sol.LR_SCHEDULER_NAME} to {sol.BASE_LR_END}, for the teachers, FSRCNN "
                    f"and the PISR students alike; val PSNR every {ref.SR.VAL_PERIOD} "
                    "iterations",
        "networks": f"FSRCNN d={ref.SR.FSRCNN.D} s={ref.SR.FSRCNN.S} m={ref.SR.FSRCNN.M}, "
                    f"bicubic skips {ref.SR.RESIDUAL}; teacher encoder width "
                    f"{ref.SR.TEACHER.ENCODER_WIDTH}",
        "teacher": f"one per imitation weight, seed {seeds[0]}; every seed of the student "
                   "distils from the chosen setting's teacher",
        "seeds": list(seeds),
        "overrides": plan.opts,
    }

    def summary(records, complete=False):
        return _summary(plan, protocol, records, complete)

    plan.add("bicubic", "bicubic", seeds[0], train=evaluate_bicubic_stage)
    for label in SEARCH:
        plan.search[label] = plan.student(label, seeds[0])
    for seed in seeds:
        plan.rows["baseline"][seed] = plan.add(f"fsrcnn_seed{seed}", "baseline", seed)
    records = run_stages(plan.stages, jobs, on_done=lambda recs: save_json(
        json_path, {"command": command, **summary(recs), "complete": False}))
    plan.choose(records)
    report = run_report(plan.stages, summary, json_path, png_path,
                        lambda rep: _panels(plan, rep),
                        f"PISR x{scale} on Set5/Set14 (Y), {len(seeds)} seeds, {iters} "
                        "iterations", command, jobs)
    report["total_wall_s"] = time.perf_counter() - t0  # both phases, not the last alone
    save_json(json_path, report)
    return report
