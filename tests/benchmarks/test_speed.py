"""The speed benchmark's building blocks and tools/bench_speed.py on tiny images (no
timing assertions: the figures come from tools/bench_speed.py itself)."""
import json
import os
import sys

from kd_det.benchmarks.timing import interleaved_times

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import bench_speed  # noqa: E402

KEYS = ("student_step_s", "teacher_forward_s", "kd_step_s", "naive_kd_step_s",
        "overhead_ratio", "naive_over_kd", "peak_rss_mb", "command")


def test_interleaved_times_rotate_the_order_and_skip_warmup():
    calls = []
    times = interleaved_times({n: (lambda n=n: calls.append(n)) for n in "abc"},
                              warmup=1, repeats=3)
    assert calls == list("abc" "bca" "cab" "abc")
    assert {n: len(v) for n, v in times.items()} == {"a": 3, "b": 3, "c": 3}


def test_bench_speed_tool_writes_and_prints_every_figure(tmp_path, capsys):
    out = tmp_path / "speed.json"
    bench_speed.main(["--size", "64", "--batch", "1", "--warmup", "0", "--iters", "1",
                      "--output", str(out)])
    result = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == result
    for k in KEYS:
        assert k in result, k
    for k in KEYS[:-1]:
        assert result[k] > 0, k
    assert result["overhead_ratio"] == result["kd_step_s"] / (
        result["student_step_s"] + result["teacher_forward_s"])
    assert result["command"].startswith("python tools/bench_speed.py --size 64")
    assert result["random_teacher"] and len(result["samples_s"]["kd_step"]) == 1


def test_bench_speed_times_every_teacher_of_an_ensemble(tmp_path, monkeypatch):
    from kd_det.benchmarks import speed

    seen = []
    run = speed.SpeedBench.run

    def spy(self, *a, **k):
        seen.append(list(self.model.teachers))
        return run(self, *a, **k)

    monkeypatch.setattr(speed.SpeedBench, "run", spy)
    out = tmp_path / "speed2.json"
    result = bench_speed.main(["--size", "64", "--batch", "1", "--warmup", "0", "--iters", "1",
                               "--teachers", "2", "--output", str(out)])
    assert seen == [["teacher", "teacher_1"]] and result["num_teachers"] == 2


def test_term_profile_times_the_step_without_each_term_and_restores_them(tmp_path,
                                                                         monkeypatch):
    from kd_det.modeling import DistillRCNN

    computed = []
    kd_losses = DistillRCNN.kd_losses

    def spy(self, step):
        out = kd_losses(self, step)
        computed.append(sorted(out))
        return out

    monkeypatch.setattr(DistillRCNN, "kd_losses", spy)
    result = bench_speed.main(["--size", "64", "--batch", "1", "--warmup", "0", "--iters", "2",
                               "--profile-terms", "--output", str(tmp_path / "s.json")])
    full = max(computed, key=len)
    costs = result["term_costs"]
    assert sorted(costs) == sorted(full + ["all_terms"])
    for name in full:  # each term left out of some steps, and only that one
        assert sorted(n for n in full if n != name) in computed
    assert [] in computed and computed.count(full) >= 2  # each round has a whole step
    assert all(c["per_round"]["n"] == 2 for c in costs.values())
    spread = result["overhead_ratio_per_round"]
    assert spread["min"] <= spread["median"] <= spread["max"] and spread["n"] == 2
