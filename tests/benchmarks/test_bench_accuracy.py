"""tools/bench_accuracy.py --quick end to end: on Aquarium in the suite, on BCCD as a slow
test (several minutes on 2 cores; run with -m slow)."""
import json
import os
import subprocess
import sys

import pytest

from ..detection_utils import ROOT, load_tool


@pytest.mark.slow
def test_quick_benchmark_writes_every_row(shared_data, tmp_path):
    subprocess.run([sys.executable, "tools/bench_accuracy.py", "--quick", "--threads", "1",
                    "--data", os.path.join(shared_data, "BCCD"), "--work-dir",
                    str(tmp_path / "work")], cwd=ROOT, check=True)
    res = json.loads((tmp_path / "work_quick" / "results.json").read_text())
    for row in ("teacher", "baseline", "kd"):
        assert len(res[row]["AP50"]) == 1 and 0 <= res[row]["AP"][0] <= 100
    assert res["curves"]["baseline"] and res["curves"]["kd"]
    assert res["flops"]["backbone_ratio"] > 2
    assert "grad_ratio/hint" in res["diagnostics"]["kd"]
    assert (tmp_path / "work_quick" / "results.png").is_file()




def _row(ap50, ap):
    return {"AP50": [ap50], "AP": [ap], "AP50_stats": {"mean": ap50}, "AP_stats": {"mean": ap}}


def test_carried_selection_maps_kd_best_to_the_search_run_of_its_settings():
    """--test-only: the selection part is copied as measured; a kd_best of other settings
    there is replaced by the search run whose overrides are today's kd_best settings."""
    tool = load_tool("bench_accuracy")
    previous = {
        "protocol": {"selection": "train a -> validate b, seed 0"},
        "kd_best_settings": {"KD.STUDENT.INIT_FROM_TEACHER": True, "KD.HINT.LOSS": "pkd",
                             "KD.HINT.WEIGHT": 6.0},
        "validation": {"teacher": _row(90.0, 60.0), "baseline": _row(80.0, 50.0),
                       "kd": _row(85.0, 52.0), "kd_best": _row(1.0, 1.0)},
        "validation_gap_closed": {"kd": {"AP50": 0.5, "AP": 0.2}, "kd_best": {}},
        "ablation": {"pkd_hint": _row(88.0, 55.0), "inherit": _row(81.0, 58.0)},
        "curves": {"baseline": [{"iter": 1}], "kd_best": [{"iter": 2}]},
        "diagnostics": {"kd": {"x": 1}, "kd_best": {"x": 2}},
        "time_to_accuracy": {"kd": 0.5, "kd_best": 0.4},
    }
    results = {"protocol": {}, "kd_best_settings": {"KD.HINT.LOSS": "pkd",
                                                    "KD.HINT.WEIGHT": 6.0}}
    tool.carry_selection(results, previous)
    assert results["validation"]["kd_best"] == previous["ablation"]["pkd_hint"]
    assert results["validation_gap_closed"]["kd_best"] == {"AP50": 0.8, "AP": 0.5}
    assert "kd_best" not in results["curves"] and "kd_best" not in results["diagnostics"]
    assert results["curves"]["baseline"] == [{"iter": 1}] and results["diagnostics"]["kd"]
    assert "pkd_hint" in results["protocol"]["selection_kd_best"]
    assert previous["curves"]["kd_best"]  # the carried-from results are left as they were
    same = {"protocol": {}, "kd_best_settings": previous["kd_best_settings"]}
    tool.carry_selection(same, previous)
    assert same["validation"]["kd_best"] == _row(1.0, 1.0) and same["curves"]["kd_best"]


def test_quick_aquarium_benchmark_reports_coco_metrics(shared_data, tmp_path):
    """The Aquarium benchmark's smoke run (96 px, 20 iterations): every row, COCO's
    per-size and per-class AP, and the commit, in the results JSON."""
    subprocess.run([sys.executable, "tools/bench_accuracy.py", "--dataset", "aquarium",
                    "--quick", "--threads", "1", "--data", os.path.join(shared_data, "aquarium"),
                    "--work-dir", str(tmp_path / "work")], cwd=ROOT, check=True,
                   env=dict(os.environ, OMP_NUM_THREADS="1"))
    res = json.loads((tmp_path / "work_quick" / "results.json").read_text())
    for row in ("teacher", "baseline", "kd"):
        assert len(res[row]["AP"]) == 1 and 0 <= res[row]["AP"][0] <= 100
    per_class = res["baseline"]["AP_per_class"]
    assert sorted(per_class) == sorted(["fish", "jellyfish", "penguin", "puffin", "shark",
                                        "starfish", "stingray"])
    assert set(res["baseline"]["AP_per_size"]) == {"APs", "APm", "APl"}
    assert res["commit"] and "tree_clean" in res
    assert res["protocol"]["test"].startswith("train aquarium_trainval -> test aquarium_test")


def test_kd_best_is_written_by_the_fixed_rule(tmp_path):
    """Chen's recipe plus the searched option of the highest mean val AP when it beats
    Chen's; the YAML loads as kd.yaml plus exactly those overrides, and is not rewritten."""
    import shutil

    from kd_det.benchmarks.detection import _kd_overrides, choose_kd_best, load_cfg

    tool = load_tool("bench_accuracy")
    folder = tmp_path / "Aquarium"
    shutil.copytree(os.path.join(ROOT, "configs", "Aquarium"), folder)
    (folder / "kd.yaml").write_text((folder / "kd.yaml").read_text().replace(
        '_BASE_: "student.yaml"', f'_BASE_: "{ROOT}/configs/Aquarium/student.yaml"'))

    def stats(*aps):
        return {"AP": list(aps), "AP50": [2 * a for a in aps],
                "AP_stats": {"mean": sum(aps) / len(aps)},
                "AP50_stats": {"mean": 2 * sum(aps) / len(aps)}}

    results = {"protocol": {"selection": "train a -> validate b, seeds [0, 1]"},
               "validation": {"kd": stats(24.0, 25.0)},
               "ablation": {"pkd_hint": stats(25.0, 25.5), "hint_x4": stats(26.0, 24.0),
                            "inherit": stats(23.0, 23.0)}}
    assert choose_kd_best(results, tool.OPTIONS) == (
        "pkd_hint", {"KD.HINT.LOSS": "pkd", "KD.HINT.WEIGHT": 6.0})
    path = tmp_path / "selection.json"
    path.write_text(json.dumps(results))
    tool.write_kd_best(str(path), str(folder))
    kd, best = load_cfg(str(folder / "kd.yaml")), load_cfg(str(folder / "kd_best.yaml"))
    assert _kd_overrides(kd, best) == {"KD.HINT.LOSS": "pkd", "KD.HINT.WEIGHT": 6.0}
    assert best.OUTPUT_DIR == "./output/aquarium/kd_best"
    assert "kd + pkd_hint: 25.25 (50.50)" in (folder / "kd_best.yaml").read_text()
    with pytest.raises(SystemExit, match="exists"):
        tool.write_kd_best(str(path), str(folder))
    # no option above Chen's mean: Chen's recipe itself, and no second copy of it to train
    results["ablation"] = {"inherit": stats(23.0, 23.0)}
    assert choose_kd_best(results, tool.OPTIONS) == (None, {})
    path.write_text(json.dumps(results))
    (folder / "kd_best.yaml").unlink()
    with pytest.raises(SystemExit, match="kd_best is Chen's recipe"):
        tool.write_kd_best(str(path), str(folder))
    assert not (folder / "kd_best.yaml").exists()
