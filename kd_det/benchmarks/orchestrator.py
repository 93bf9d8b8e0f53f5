"""The one way a benchmark runs: stages, seeds, caching, parallel workers, results JSON.

A stage is one training run (a teacher, a student of one seed...). It runs once: its
record goes to OUTPUT_DIR/stage.json with the fingerprint of its config, and a later run
of the same config reuses it; an interrupted run of the same config resumes from its last
checkpoint, and so does a run whose config only lengthens the schedule (SOLVER.MAX_ITER,
SOLVER.STEPS) while its checkpoint precedes both schedules' first LR step, as everything
trained so far is what the longer schedule trains too. Stages run in worker processes
when jobs > 1 (one torch thread each, as two torch processes on two shared cores train
faster than one with two threads), a stage only once the stages it reads are done.
Per-seed values are summarised as mean and sample std.
"""
import argparse
import concurrent.futures as cf
import dataclasses
import hashlib
import json
import logging
import multiprocessing as mp
import os
import re
import shlex
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.config import CfgNode

from ..file_io import save_json
from .machine import code_version, machine_info
from .report import save_report

__all__ = ["Stage", "run_stages", "run_report", "cached_json", "config_fingerprint",
           "read_diagnostics", "pick_best", "add_run_arguments",
           "apply_run_arguments", "benchmark_parser", "apply_quick", "start_benchmark"]

logger = logging.getLogger(__name__)

Records = Dict[str, Dict]


def config_fingerprint(cfg: CfgNode) -> str:
    """Short hash of the whole config: a stage's identity in the cache."""
    return hashlib.sha1(cfg.dump().encode()).hexdigest()[:12]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training run of a benchmark.

    `train(cfg, resume=...)` trains `cfg` into cfg.OUTPUT_DIR and returns its results (a
    flat JSON-able dict); it is a module-level function or a trainer's classmethod, so that
    a worker process can import it. `after` names the stages whose output it reads (a
    student's teacher). `fingerprint` identifies its config in the cache (default: a hash
    of cfg.dump()); `identity` hashes a config the way that fingerprint does, for telling
    a lengthened schedule of the same run (a stage that reads no other).
    """

    name: str
    cfg: CfgNode
    train: Callable[..., Dict]
    after: Tuple[str, ...] = ()
    fingerprint: str = ""
    identity: Callable[[CfgNode], str] = config_fingerprint

    @property
    def record_path(self) -> str:
        return os.path.join(self.cfg.OUTPUT_DIR, "stage.json")

    def key(self) -> str:
        return self.fingerprint or config_fingerprint(self.cfg)


def _read_cached(path: str, fingerprint: str) -> Optional[Dict]:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        cached = json.load(f)
    return cached if cached.get("fingerprint") == fingerprint else None


def cached_json(path: str, fingerprint: str, compute: Callable[[], Dict]) -> Dict:
    """The record at `path` when it holds `fingerprint`; else {"fingerprint", **compute()},
    written there first."""
    cached = _read_cached(path, fingerprint)
    if cached is not None:
        logger.info("Reusing %s", path)
        return cached
    record = {"fingerprint": fingerprint, **compute()}
    save_json(path, record)
    return record


def read_diagnostics(output_dir: str) -> Dict[str, Dict[str, float]]:
    """Mean, first and last value of every kd_diag/* scalar a stage logged in its
    metrics.json (the diagnostics every trainer writes under that prefix), named as
    modeling.diagnostics.term_name names them (stages logged before names dropped their
    "loss_" prefix are read under today's names)."""
    path = os.path.join(output_dir, "metrics.json")
    series: Dict[str, List[float]] = {}
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                for k, v in row.items():
                    if k.startswith("kd_diag/"):
                        name = k[len("kd_diag/"):].replace("/loss_", "/")
                        series.setdefault(name, []).append(float(v))
    return {k: {"mean": sum(v) / len(v), "first": v[0], "last": v[-1], "n": len(v)}
            for k, v in sorted(series.items())}


def _checkpoint_iter(output_dir: str) -> Optional[int]:
    """Iterations done by the checkpoint `last_checkpoint` names (None for model_final)."""
    with open(os.path.join(output_dir, "last_checkpoint")) as f:
        match = re.fullmatch(r"model_(\d+)\.pth", f.read().strip())
    return int(match.group(1)) + 1 if match else None


def _prefix_of(old: CfgNode, new: CfgNode, done: Optional[int], identity) -> bool:
    """Whether `done` iterations of `old` are also the first `done` iterations of `new`:
    the configs differ only in SOLVER.MAX_ITER / STEPS and no LR step has been taken."""
    if done is None or "SOLVER" not in old or "SOLVER" not in new:
        return False
    first_step = min([*old.SOLVER.STEPS, *new.SOLVER.STEPS, old.SOLVER.MAX_ITER])
    old, new = old.clone(), new.clone()
    for c in (old, new):
        c.defrost()
        c.SOLVER.MAX_ITER, c.SOLVER.STEPS = 0, ()
    return done <= first_step and identity(old) == identity(new)


def _may_resume(stage: Stage) -> bool:
    """Whether an interrupted stage in `out` continues: the same config, or a lengthened
    schedule of it (see _prefix_of)."""
    out, cfg = stage.cfg.OUTPUT_DIR, stage.cfg
    started = os.path.join(out, "fingerprint.txt")
    saved = os.path.join(out, "config.yaml")
    if not (os.path.isfile(os.path.join(out, "last_checkpoint")) and os.path.isfile(started)):
        return False
    with open(started) as f:
        if f.read() == stage.key():
            return True
    if stage.after or not os.path.isfile(saved):
        return False
    with open(saved) as f:  # both read from YAML text, so that both have the same types
        old, new = CfgNode.load_cfg(f), CfgNode.load_cfg(cfg.dump())
    if _prefix_of(old, new, _checkpoint_iter(out), stage.identity):
        logger.info("%s: resuming under a longer schedule (SOLVER.MAX_ITER %d, STEPS %s); its "
                    "%d iterations so far are that schedule's too", out, cfg.SOLVER.MAX_ITER,
                    tuple(cfg.SOLVER.STEPS), _checkpoint_iter(out))
        return True
    return False


def _log_to(output_dir: str) -> None:
    """Send this stage's logs to `output_dir`/log.txt only (not to the previous stages'
    files) and to the console once, however many stages run in this process."""
    from detectron2.utils.logger import setup_logger

    for name in ("detectron2", "fvcore", "kd_det"):
        named = logging.getLogger(name)
        for h in [h for h in named.handlers if getattr(h, "stream", None) is not sys.stdout]:
            named.removeHandler(h)
        setup_logger(output_dir, name=name, configure_stdout=not named.handlers)


def _run_stage(stage: Stage) -> Dict:
    out = stage.cfg.OUTPUT_DIR
    fingerprint = stage.key()

    def train():
        os.makedirs(out, exist_ok=True)
        _log_to(out)
        resume = _may_resume(stage)
        with open(os.path.join(out, "config.yaml"), "w") as f:
            f.write(stage.cfg.dump())
        with open(os.path.join(out, "fingerprint.txt"), "w") as f:
            f.write(fingerprint)
        done = 0
        if resume:  # a finished run's model_final: its whole schedule
            done = _checkpoint_iter(out) or stage.cfg.get("SOLVER", {}).get("MAX_ITER", 0)
        t0 = time.perf_counter()
        results = stage.train(stage.cfg, resume=resume)
        # A resumed stage's wall-clock is this call's only: say from which iteration.
        return {"train_seconds": time.perf_counter() - t0, "resumed_at_iter": done, **results}

    return cached_json(stage.record_path, fingerprint, train)


def _stage_worker(stage: Stage) -> Dict:
    torch.set_num_threads(1)
    return _run_stage(stage)


def run_stages(stages: Sequence[Stage], jobs: int = 1,
               on_done: Optional[Callable[[Records], None]] = None,
               setup: Optional[Tuple[Callable, tuple]] = None) -> Records:
    """Run every stage once; {name: record}, a record being the stage's results with its
    "fingerprint" and "train_seconds" (the wall-clock of its train call).

    With jobs <= 1 the stages run in this process in the order given; otherwise in `jobs`
    worker processes, submitted in that order as soon as the stages they name in `after`
    are done. `on_done(records)` runs in this process after every stage. `setup`
    (function, args), both picklable, runs once in each worker before its first stage
    (what the parent did to itself that the stages need, e.g. datasets it registered).
    """
    names = set()
    for s in stages:
        missing = [a for a in s.after if a not in names]
        if s.name in names or missing:
            raise ValueError(f"stage {s.name!r}: names must be unique and come after the "
                             f"stages they read (unknown or later: {missing})")
        names.add(s.name)
    records: Records = {}

    def finish(stage, record):
        records[stage.name] = record
        logger.info("[%d/%d] %s done (%.0f s of training)", len(records), len(stages),
                    stage.name, record["train_seconds"])
        if on_done is not None:
            on_done(records)

    if jobs <= 1:
        for stage in stages:
            finish(stage, _run_stage(stage))
        return records
    # The workers' progress bars would interleave (tqdm reads this when imported).
    os.environ.setdefault("TQDM_DISABLE", "1")
    waiting: List[Stage] = list(stages)
    init, args = setup or (None, ())
    with cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=init,
                                initargs=args) as pool:
        running: Dict[cf.Future, Stage] = {}
        while waiting or running:
            ready = [s for s in waiting if all(a in records for a in s.after)]
            for stage in ready:
                waiting.remove(stage)
                cached = _read_cached(stage.record_path, stage.key())
                if cached is not None:
                    finish(stage, cached)
                else:
                    running[pool.submit(_stage_worker, stage)] = stage
            if ready and not running:
                continue  # cached stages may have readied others
            done, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
            for future in done:
                finish(running.pop(future), future.result())
    return records


def run_report(stages: Sequence[Stage], summary: Callable[[Records, bool], Dict],
               json_path: str, png_path: str, panels: Callable[[Dict], List], title: str,
               command: str, jobs: int = 1) -> Dict:
    """Run `stages` and report them: the results JSON is `summary(records, complete)` plus
    the command, the machine (measured at the start, and its load at the end), the total
    wall-clock and "complete"; it is rewritten after every stage and, at the end, written
    with the PNG of `panels(results)`."""
    t0 = time.perf_counter()
    header = {"command": command, **code_version(), "hardware": machine_info()}

    def results(records, complete):
        return {**header, **summary(records, complete), "complete": complete}

    records = run_stages(stages, jobs,
                         on_done=lambda recs: save_json(json_path, results(recs, False)))
    report = results(records, True)
    report["hardware"]["load_avg_1min_end"] = os.getloadavg()[0]
    report["total_wall_s"] = time.perf_counter() - t0
    save_report(report, json_path, png_path, panels(report), title)
    return report


def pick_best(scores: Dict[str, float], higher_is_better: bool = True) -> str:
    """The candidate of a validation search with the best score (NaN never wins; ties go
    to the first listed, so list the simpler or paper-default setting first)."""
    valid = {k: v for k, v in scores.items() if v == v}
    if not valid:
        raise ValueError(f"no candidate has a score: {scores}")
    sign = 1 if higher_is_better else -1
    return max(valid, key=lambda k: (sign * valid[k], -list(scores).index(k)))


# ---- command line ----------------------------------------------------------------------


def add_run_arguments(parser, threads: int = 0, jobs: int = 1) -> None:
    """--threads / --jobs: how many torch threads this process uses, how many stages run at
    once."""
    parser.add_argument("--threads", type=int, default=threads,
                        help="torch CPU threads of this process (0: all cores); use 1 on a busy "
                             "machine, where OpenMP threads competing for cores slow training "
                             "many-fold")
    parser.add_argument("--jobs", type=int, default=jobs,
                        help="trainings run in parallel worker processes (1 torch thread each)")


def apply_run_arguments(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)


def benchmark_parser(doc: str, config_dir: str, output_root: str, json_path: str,
                     iters: int, jobs: int = 1) -> argparse.ArgumentParser:
    """The arguments of an auxiliary benchmark (tools/bench_{cls_kd,face_kd,sr}.py), with its
    defaults; trailing KEY VALUE pairs override every run's config."""
    p = argparse.ArgumentParser(description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-dir", default=config_dir)
    p.add_argument("--output-root", default=output_root, help="the runs' folders (the cache)")
    p.add_argument("--json", default=json_path)
    p.add_argument("--png", default=os.path.splitext(json_path)[0] + ".png")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iters", type=int, default=iters, help="SOLVER.MAX_ITER of every run")
    add_run_arguments(p, threads=1, jobs=jobs)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: the whole pipeline with tiny settings; results under "
                        "--output-root + _quick, not results/")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p


def apply_quick(args, settings: Dict) -> None:
    """--quick: `settings` ({"iters", "opts", other argument values}) replace the
    arguments, its opts go before the user's, and every output moves to
    <output-root>_quick."""
    settings = dict(settings)
    args.opts = list(settings.pop("opts", [])) + list(args.opts)
    for key, value in settings.items():
        setattr(args, key, value)
    args.output_root = args.output_root.rstrip("/") + "_quick"
    args.json = os.path.join(args.output_root, os.path.basename(args.json))
    args.png = os.path.join(args.output_root, os.path.basename(args.png))


def start_benchmark(args) -> str:
    """Threads and console logging as `args` say; the command line to record."""
    from detectron2.utils.logger import setup_logger

    apply_run_arguments(args)
    for name in ("detectron2", "kd_det"):
        setup_logger(name=name)
    return shlex.join(["python", *sys.argv])
