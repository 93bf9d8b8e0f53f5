"""The one orchestrator: stages run once and are reused by fingerprint, interrupted ones
resume, workers wait for the stages they read, and reports carry the measured machine."""
import json
import os

import pytest
import torch
from detectron2.config import CfgNode

from kd_det.benchmarks.machine import code_version, cpu_model, machine_info
from kd_det.benchmarks.orchestrator import (
    Stage,
    read_diagnostics,
    run_report,
    run_stages,
)
from kd_det.benchmarks.report import Bars, mean_spread, mean_std


def _train(cfg, resume=False):
    """A stand-in training run: logs the call, reads what it is told to read."""
    with open(os.path.join(cfg.OUTPUT_DIR, "..", "calls.txt"), "a") as f:
        f.write(f"{os.path.basename(cfg.OUTPUT_DIR)} resume={resume}\n")
    read = [open(p).read() for p in cfg.READS]
    with open(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"), "w") as f:
        f.write(f"weights of {os.path.basename(cfg.OUTPUT_DIR)}")
    return {"score": cfg.SEED * 10.0, "read": read, "threads": torch.get_num_threads(),
            "setup": os.environ.get("KD_TEST_SETUP", "")}


def _set_env(key, value):
    os.environ[key] = value


def _stage(root, name, seed=0, after=()):
    cfg = CfgNode({"OUTPUT_DIR": str(root / name), "SEED": seed,
                   "READS": [str(root / a / "model_final.pth") for a in after]})
    return Stage(name, cfg, _train, after=tuple(after))


def _calls(root):
    path = root / "calls.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_stages_run_once_and_are_reused_by_fingerprint(tmp_path):
    stages = [_stage(tmp_path, "teacher"), _stage(tmp_path, "kd_s1", 1, ["teacher"])]
    seen = []
    records = run_stages(stages, on_done=lambda recs: seen.append(list(recs)))
    assert _calls(tmp_path) == ["teacher resume=False", "kd_s1 resume=False"]
    assert seen == [["teacher"], ["teacher", "kd_s1"]]
    assert records["kd_s1"]["score"] == 10.0 and records["kd_s1"]["read"] == [
        "weights of teacher"]
    assert records["teacher"]["train_seconds"] >= 0
    saved = json.loads((tmp_path / "kd_s1" / "stage.json").read_text())
    assert saved == records["kd_s1"] and saved["fingerprint"] == stages[1].key()
    assert run_stages(stages) == records and len(_calls(tmp_path)) == 2  # all reused
    changed = [stages[0], _stage(tmp_path, "kd_s1", 2, ["teacher"])]
    assert run_stages(changed)["kd_s1"]["score"] == 20.0
    assert _calls(tmp_path)[2:] == ["kd_s1 resume=False"]


def test_an_interrupted_stage_resumes_only_its_own_config(tmp_path):
    stage = _stage(tmp_path, "student")
    os.makedirs(tmp_path / "student")
    (tmp_path / "student" / "last_checkpoint").write_text("model_0000099.pth")
    (tmp_path / "student" / "fingerprint.txt").write_text("another config")
    assert run_stages([stage])["student"]["resumed_at_iter"] == 0
    (tmp_path / "student" / "stage.json").unlink()  # started, never finished
    assert run_stages([stage])["student"]["resumed_at_iter"] == 100
    assert _calls(tmp_path) == ["student resume=False", "student resume=True"]


def _scheduled(root, max_iter, steps, lr=0.02, after=()):
    cfg = CfgNode({"OUTPUT_DIR": str(root / "teacher"), "SEED": 0, "READS": [],
                   "SOLVER": {"MAX_ITER": max_iter, "STEPS": steps, "BASE_LR": lr}})
    return Stage("teacher", cfg, _train, after=tuple(after))


@pytest.mark.parametrize("checkpoint,longer,resumes", [
    ("model_0001499.pth", dict(max_iter=3000, steps=(2400,)), True),  # before both steps
    ("model_0001499.pth", dict(max_iter=3000, steps=(1400,)), False),  # new step passed
    ("model_0001699.pth", dict(max_iter=3000, steps=(2400,)), False),  # old step passed
    ("model_final.pth", dict(max_iter=3000, steps=(2400,)), False),
    ("model_0001499.pth", dict(max_iter=3000, steps=(2400,), lr=0.01), False),
    ("model_0001499.pth", dict(max_iter=3000, steps=(2400,), after=["x"]), False),
])
def test_a_lengthened_schedule_resumes_only_what_it_would_have_trained(
        tmp_path, checkpoint, longer, resumes):
    first = _scheduled(tmp_path, 2000, (1600,))
    out = tmp_path / "teacher"
    os.makedirs(out)
    (out / "config.yaml").write_text(first.cfg.dump())
    (out / "fingerprint.txt").write_text(first.key())
    (out / "last_checkpoint").write_text(checkpoint)
    os.makedirs(tmp_path / "x")
    run_stages([_stage(tmp_path, "x")] * bool(longer.get("after")) + [
        _scheduled(tmp_path, **longer)])
    assert _calls(tmp_path)[-1] == f"teacher resume={resumes}"


def test_stages_must_follow_the_stages_they_read(tmp_path):
    with pytest.raises(ValueError, match="come after the stages they read"):
        run_stages([_stage(tmp_path, "kd", after=["teacher"]), _stage(tmp_path, "teacher")])


@pytest.mark.timeout(300)
def test_workers_run_one_thread_each_after_the_stages_they_read(tmp_path):
    stages = [_stage(tmp_path, "teacher"), _stage(tmp_path, "baseline"),
              _stage(tmp_path, "kd", 1, ["teacher"])]
    records = run_stages(stages, jobs=2, setup=(_set_env, ("KD_TEST_SETUP", "done")))
    assert records["kd"]["read"] == ["weights of teacher"]
    assert {r["threads"] for r in records.values()} == {1}
    assert {r["setup"] for r in records.values()} == {"done"}  # each worker ran it
    assert sorted(_calls(tmp_path)) == ["baseline resume=False", "kd resume=False",
                                        "teacher resume=False"]


def test_report_is_written_after_every_stage_with_the_measured_machine(tmp_path):
    stages = [_stage(tmp_path, f"s{seed}", seed) for seed in (1, 2)]
    partial = []

    def summary(records, complete):
        if not complete:
            partial.append(json.loads((tmp_path / "r.json").read_text())
                           if (tmp_path / "r.json").exists() else None)
        return {"score": [r["score"] for r in records.values()]}

    report = run_report(stages, summary, str(tmp_path / "r.json"), str(tmp_path / "r.png"),
                        lambda r: [Bars("score", {"s": r["score"]})], "title", "cmd")
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved == report and saved["complete"] and saved["score"] == [10.0, 20.0]
    assert partial[1]["score"] == [10.0] and not partial[1]["complete"]
    assert saved["command"] == "cmd" and saved["total_wall_s"] > 0
    assert saved["commit"] == code_version()["commit"] and "tree_clean" in saved
    assert saved["hardware"]["cpu"] == cpu_model() and "load_avg_1min_end" in saved["hardware"]
    assert (tmp_path / "r.png").stat().st_size > 0


def test_machine_info_is_measured_and_summaries_use_the_sample_std():
    info = machine_info()
    assert info["cpu"] and info["cpu_count"] == os.cpu_count()
    assert (info["torch"], info["torch_threads"]) == (torch.__version__, torch.get_num_threads())
    if os.path.isfile("/proc/cpuinfo"):
        assert info["cpu"] in open("/proc/cpuinfo").read()
    assert mean_spread([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0, "n": 3}
    assert mean_std([1.0, 2.0, 3.0]) == "2.0 ± 1.0" and mean_std([4.0], 2) == "4.00"


def test_pick_best_prefers_the_best_score_then_the_first_listed():
    from kd_det.benchmarks.orchestrator import pick_best

    assert pick_best({"a": 1.0, "b": 3.0, "c": 2.0}) == "b"
    assert pick_best({"a": 1.0, "b": 3.0}, higher_is_better=False) == "a"
    assert pick_best({"paper": 2.0, "other": 2.0}) == "paper"
    assert pick_best({"diverged": float("nan"), "ok": -5.0}) == "ok"
    with pytest.raises(ValueError, match="no candidate"):
        pick_best({"x": float("nan")})


def test_read_diagnostics_averages_each_logged_scalar(tmp_path):
    rows = [{"iteration": 19, "total_loss": 1.0},
            {"iteration": 50, "kd_diag/grad_ratio/loss_hint": 0.2},
            {"iteration": 100, "kd_diag/grad_ratio/loss_hint": 0.4,
             "kd_diag/roi_bound_active_frac": 0.5}]
    (tmp_path / "metrics.json").write_text("\n".join(json.dumps(r) for r in rows))
    diag = read_diagnostics(str(tmp_path))
    g = diag["grad_ratio/hint"]  # a stage logged under the old loss_ names
    assert g["mean"] == pytest.approx(0.3) and (g["first"], g["last"], g["n"]) == (0.2, 0.4, 2)
    assert diag["roi_bound_active_frac"]["n"] == 1


def test_code_version_names_the_commit_and_whether_tracked_files_changed(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    assert code_version(str(tmp_path)) == {"commit": None, "tree_clean": None}
    git("init", "-q")
    (tmp_path / "a.txt").write_text("1")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / "output.json").write_text("{}")  # untracked: still clean
    assert code_version(str(tmp_path)) == {"commit": head, "tree_clean": True}
    (tmp_path / "a.txt").write_text("2")
    assert code_version(str(tmp_path)) == {"commit": head, "tree_clean": False}
