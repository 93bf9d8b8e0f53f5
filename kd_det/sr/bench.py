"""The PISR table in one command: bicubic, FSRCNN, FSRCNN+PISR and the HR-seeing teacher.

For each scale: the teacher (PISR step 1) is trained once, then the students (step 2) for
every seed, and the FSRCNN baseline for the same seeds with the same schedule. Runs go to
a pool of single-threaded worker processes; each run logs to its own OUTPUT_DIR/log.txt.
"""
import concurrent.futures as cf
import logging
import multiprocessing as mp
import os
import time
from typing import Dict, List, Sequence

import torch

from kd_det.utils.reporting import bar_chart, mean_spread, save_json

from .config import setup_sr_cfg
from .trainer import evaluate_bicubic, run_sr, test_set_names

__all__ = ["run_benchmark", "markdown_table"]

logger = logging.getLogger(__name__)
CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "sr")
CONFIGS = {"teacher": "PISR-teacher-x{}.yaml", "baseline": "FSRCNN-x{}.yaml",
           "student": "PISR-student-x{}.yaml"}
ROWS = {
    "bicubic": "Bicubic",
    "baseline": "FSRCNN (baseline)",
    "student": "FSRCNN + PISR (student)",
    "teacher": "PISR teacher (sees HR: upper reference)",
}


def _train_run(config_file: str, opts: List) -> Dict:
    """One training run in a worker process (one thread; logs to OUTPUT_DIR/log.txt)."""
    from detectron2.utils.logger import setup_logger

    torch.set_num_threads(1)
    cfg = setup_sr_cfg(config_file, opts)
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    for name in ("detectron2", "fvcore", "kd_det"):
        setup_logger(cfg.OUTPUT_DIR, name=name, configure_stdout=False)
    with open(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    t0 = time.perf_counter()
    metrics = run_sr(cfg)
    return {"metrics": metrics, "wall_s": time.perf_counter() - t0}


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
                    std = f" ± {p['std']:.2f}" if p["n"] > 1 else ""
                    cells.append(f"{p['mean']:.2f}{std} / {q['mean']:.4f} (n={p['n']})")
                else:
                    cells.append(f"{r['psnr']:.2f} / {r['ssim']:.4f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_benchmark(
    command: str,
    output_dir: str = "./output/sr_bench",
    json_path: str = "results/sr_pisr.json",
    png_path: str = "results/sr_pisr.png",
    scales: Sequence[int] = (2, 3, 4),
    seeds: Sequence[int] = (0, 1, 2),
    iters: int = 2000,
    lr_patch: int = 16,
    batch_size: int = 16,
    jobs: int = 2,
    extra_opts: Sequence = (),
) -> Dict:
    """Train every run, evaluate on Set5/Set14 and write the JSON (with `command`) + PNG."""
    t_start = time.perf_counter()
    schedule = {
        "iterations": iters, "batch_size": batch_size, "lr_patch_px": lr_patch,
        "hr_patch_px": {f"x{k}": lr_patch * k for k in scales},
        "optimizer": "Adam, lr 1e-3 cosine to 1e-5", "loss_weights": "imitation 1e-4, VID 1e-6",
        "note": "short CPU schedule (the paper trains for far longer on larger patches); "
                "baseline and student share it",
    }

    def opts(scale, mode, seed):
        out = os.path.join(output_dir, f"x{scale}", mode if mode == "teacher" else
                           f"{mode}_seed{seed}")
        o = ["SEED", seed, "OUTPUT_DIR", out, "SOLVER.MAX_ITER", iters,
             "SOLVER.CHECKPOINT_PERIOD", iters + 1, "SR.DATA.PATCH_SIZE", lr_patch * scale,
             "DATALOADER.BATCH_SIZE", batch_size]
        if mode == "student":
            o += ["SR.KD.TEACHER_WEIGHTS",
                  os.path.join(output_dir, f"x{scale}", "teacher", "model_final.pth")]
        return o + list(extra_opts)

    def config(scale, mode):
        return os.path.join(CONFIG_DIR, CONFIGS[mode].format(scale))

    results: Dict = {}
    sets = None
    for k in scales:
        cfg = setup_sr_cfg(config(k, "baseline"), list(extra_opts))
        sets = test_set_names(cfg)
        results[f"x{k}"] = {"bicubic": _per_set(evaluate_bicubic(cfg))}
        logger.info("x%d bicubic: %s", k, results[f"x{k}"]["bicubic"])

    # parallel workers' progress bars would interleave (they read this when importing tqdm)
    os.environ.setdefault("TQDM_DISABLE", "1")
    runs: List[Dict] = []
    pending = {}
    total = len(scales) * (1 + 2 * len(seeds))
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        def submit(scale, mode, seed):
            o = opts(scale, mode, seed)
            pending[pool.submit(_train_run, config(scale, mode), o)] = (scale, mode, seed, o)

        # teachers first (the students wait for them), then the baselines
        for k in scales:
            submit(k, "teacher", seeds[0])
        for k in scales:
            for s in seeds:
                submit(k, "baseline", s)
        while pending:
            done, _ = cf.wait(list(pending), return_when=cf.FIRST_COMPLETED)
            for fut in done:
                scale, mode, seed, o = pending.pop(fut)
                res = fut.result()
                runs.append({"scale": scale, "mode": mode, "seed": seed, "opts": o, **res})
                logger.info("[%d/%d] x%d %s seed %d done in %.0f s: %s", len(runs), total,
                            scale, mode, seed, res["wall_s"],
                            ", ".join(f"{a} {b:.4f}" for a, b in res["metrics"].items()))
                if mode == "teacher":
                    for s in seeds:
                        submit(scale, "student", s)

    for k in scales:
        for mode in ("teacher", "baseline", "student"):
            per_seed = [_per_set(r["metrics"]) for r in runs
                        if r["scale"] == k and r["mode"] == mode]
            seeds_of = [r["seed"] for r in runs if r["scale"] == k and r["mode"] == mode]
            results[f"x{k}"][mode] = {
                s: {m: {**mean_spread([p[s][m] for p in per_seed]), "per_seed":
                        [p[s][m] for p in per_seed], "seeds": seeds_of}
                    for m in ("psnr", "ssim")}
                for s in sets
            }
    table = markdown_table(results, scales, sets)
    report = {
        "command": command,
        "hardware": f"2 CPU cores (shared), {jobs} runs in parallel, 1 torch thread each",
        "metric": "PSNR (dB) / SSIM on the Y channel (BT.601), `scale` pixels shaved; "
                  "LR by bicubic downscaling (PIL, antialiased)",
        "rows": ROWS,
        "schedule": schedule,
        "seeds": list(seeds),
        "teacher_seed": seeds[0],
        "results": results,
        "table_markdown": table,
        "runs": sorted(runs, key=lambda r: (r["scale"], r["mode"], r["seed"])),
        "total_wall_s": time.perf_counter() - t_start,
    }
    save_json(json_path, report)
    _plot(png_path, results, scales, sets)
    logger.info("wrote %s and %s in %.0f s\n%s", json_path, png_path,
                report["total_wall_s"], table)
    return report


def _plot(path: str, results: Dict, scales: Sequence[int], sets: Sequence[str]) -> None:
    """PSNR gain over bicubic per test set and scale (bars: mean, error bars: seed std)."""
    groups = {}
    for k in scales:
        for s in sets:
            base = results[f"x{k}"]["bicubic"][s]["psnr"]
            groups[f"{s} x{k}"] = {
                ROWS[m].split(" (")[0] + (" (HR, ref.)" if m == "teacher" else ""):
                [v - base for v in results[f"x{k}"][m][s]["psnr"]["per_seed"]]
                for m in ("baseline", "student", "teacher")
            }
    bar_chart(path, groups, ylabel="PSNR gain over bicubic (dB)",
              title="PISR on Set5/Set14 (Y channel), short CPU schedule")
