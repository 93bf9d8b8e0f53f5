"""The PISR table: bicubic, FSRCNN, FSRCNN + PISR and the HR-seeing teacher on Set5/Set14.

For each scale: the teacher (PISR step 1) is trained once, then the students (step 2) for
every seed, and the FSRCNN baseline for the same seeds with the same schedule. The config
folder (configs/sr) comes from the caller.
"""
import os
from typing import Dict, Sequence

from ..sr import SRTrainer
from ..sr.trainer import evaluate_bicubic, test_set_names
from .orchestrator import Stage, mean_spread, run_report
from .report import Bars, mean_std

__all__ = ["CONFIGS", "ROWS", "evaluate_bicubic_stage", "markdown_table", "run_benchmark"]

CONFIGS = {"teacher": "PISR-teacher-x{}.yaml", "baseline": "FSRCNN-x{}.yaml",
           "student": "PISR-student-x{}.yaml"}
ROWS = {
    "bicubic": "Bicubic",
    "baseline": "FSRCNN (baseline)",
    "student": "FSRCNN + PISR (student)",
    "teacher": "PISR teacher (sees HR: upper reference)",
}


def evaluate_bicubic_stage(cfg, resume: bool = False) -> Dict[str, float]:
    """A stage that trains nothing: bicubic upscaling on cfg's test sets."""
    return evaluate_bicubic(cfg)


def _per_set(metrics: Dict[str, float]) -> Dict[str, Dict[str, float]]:
    out: Dict[str, Dict[str, float]] = {}
    for key, value in metrics.items():
        name, metric = key.split("/")
        out.setdefault(name, {})[metric] = value
    return out


def markdown_table(results: Dict, scales: Sequence[int], sets: Sequence[str]) -> str:
    """PSNR / SSIM per row and scale; mean ± std over seeds where there are several."""
    head = "| method | " + " | ".join(f"{s} x{k}" for k in scales for s in sets) + " |"
    lines = [head, "|---|" + "---|" * (len(scales) * len(sets))]
    for row, label in ROWS.items():
        cells = []
        for k in scales:
            for s in sets:
                r = results[f"x{k}"][row][s]
                if isinstance(r["psnr"], dict):
                    p, q = r["psnr"], r["ssim"]
                    cells.append(f"{mean_std(p['per_seed'], 2)} / {q['mean']:.4f} (n={p['n']})")
                else:
                    cells.append(f"{r['psnr']:.2f} / {r['ssim']:.4f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_benchmark(config_dir: str, output_root: str, json_path: str, png_path: str,
                  seeds: Sequence[int], iters: int, command: str, scales: Sequence[int] = (2, 3, 4),
                  lr_patch: int = 16, batch_size: int = 16, opts: Sequence = (),
                  jobs: int = 2) -> Dict:
    """Train every run, evaluate on Set5/Set14; the results JSON (after every run) + PNG."""
    schedule = {
        "iterations": iters, "batch_size": batch_size, "lr_patch_px": lr_patch,
        "hr_patch_px": {f"x{k}": lr_patch * k for k in scales},
        "optimizer": "Adam, lr 1e-3 cosine to 1e-5", "loss_weights": "imitation 1e-4, VID 1e-6",
        "note": "short CPU schedule (the paper trains for far longer on larger patches); "
                "baseline and student share it",
    }
    stages, runs = [], {}  # runs: stage name -> (scale, mode, seed, opts)

    def add(scale, mode, seed):
        name = os.path.join(f"x{scale}", mode if mode in ("teacher", "bicubic") else
                            f"{mode}_seed{seed}")
        run_opts = ["SEED", seed, "OUTPUT_DIR", os.path.join(output_root, name),
                "SOLVER.MAX_ITER", iters, "SOLVER.CHECKPOINT_PERIOD", iters + 1,
                "SR.DATA.PATCH_SIZE", lr_patch * scale, "DATALOADER.BATCH_SIZE", batch_size]
        teacher = os.path.join(f"x{scale}", "teacher")
        if mode == "student":
            run_opts += ["SR.KD.TEACHER_WEIGHTS",
                         os.path.join(output_root, teacher, "model_final.pth")]
        run_opts += list(opts)
        config = CONFIGS["baseline" if mode == "bicubic" else mode].format(scale)
        cfg = SRTrainer.setup_cfg(os.path.join(config_dir, config), run_opts)
        train = evaluate_bicubic_stage if mode == "bicubic" else SRTrainer.run
        stages.append(Stage(name, cfg, train, after=(teacher,) if mode == "student" else ()))
        runs[name] = (scale, mode, seed, run_opts)

    # teachers first (the students wait for them), then the baselines
    for k in scales:
        add(k, "bicubic", seeds[0])
        add(k, "teacher", seeds[0])
    for mode in ("baseline", "student"):
        for k in scales:
            for s in seeds:
                add(k, mode, s)
    sets = test_set_names(stages[0].cfg)

    def summary(records, complete):
        done = [dict(zip(("scale", "mode", "seed", "opts"), runs[s.name]),
                     metrics={k: v for k, v in records[s.name].items()
                              if k not in ("fingerprint", "train_seconds")},
                     wall_s=records[s.name]["train_seconds"])
                for s in stages if s.name in records]
        out = {"metric": "PSNR (dB) / SSIM on the Y channel (BT.601), `scale` pixels shaved; "
                         "LR by bicubic downscaling (PIL, antialiased)",
               "rows": ROWS, "schedule": schedule, "seeds": list(seeds),
               "teacher_seed": seeds[0]}
        if complete:
            out["results"] = _results(done, scales, sets)
            out["table_markdown"] = markdown_table(out["results"], scales, sets)
        out["runs"] = sorted((r for r in done if r["mode"] != "bicubic"),
                             key=lambda r: (r["scale"], r["mode"], r["seed"]))
        return out

    return run_report(stages, summary, json_path, png_path,
                      lambda report: _panels(report["results"], scales, sets),
                      "PISR on Set5/Set14 (Y channel), short CPU schedule", command, jobs)


def _results(runs, scales, sets) -> Dict:
    """{"x<k>": {"bicubic": {set: {psnr, ssim}}, mode: {set: {metric: stats + per_seed}}}}."""
    results = {}
    for k in scales:
        bicubic = next(r for r in runs if r["scale"] == k and r["mode"] == "bicubic")
        results[f"x{k}"] = {"bicubic": _per_set(bicubic["metrics"])}
        for mode in ("teacher", "baseline", "student"):
            mine = [r for r in runs if r["scale"] == k and r["mode"] == mode]
            per_seed = [_per_set(r["metrics"]) for r in mine]
            results[f"x{k}"][mode] = {
                s: {m: {**mean_spread([p[s][m] for p in per_seed]),
                        "per_seed": [p[s][m] for p in per_seed],
                        "seeds": [r["seed"] for r in mine]}
                    for m in ("psnr", "ssim")}
                for s in sets
            }
    return results


def _panels(results: Dict, scales: Sequence[int], sets: Sequence[str]):
    """PSNR gain over bicubic per test set and scale (bars: mean, error bars: seed std)."""
    panels = []
    for k in scales:
        for s in sets:
            base = results[f"x{k}"]["bicubic"][s]["psnr"]
            gains = {ROWS[m].split(" (")[0] + (" (HR, ref.)" if m == "teacher" else ""):
                     [v - base for v in results[f"x{k}"][m][s]["psnr"]["per_seed"]]
                     for m in ("baseline", "student", "teacher")}
            panels.append(Bars(f"{s} x{k}", gains, ylabel="PSNR gain over bicubic (dB)"))
    return panels
