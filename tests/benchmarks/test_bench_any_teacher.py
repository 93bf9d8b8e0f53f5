"""tools/bench_any_teacher.py: the two pairs' folders and datasets, and every stage of both
built on Aquarium (configs, class-subset datasets) without training any."""
import os
import subprocess
import sys

from ..detection_utils import ROOT, load_tool


def test_both_pairs_build_their_stages(shared_data, tmp_path):
    out = subprocess.run(
        [sys.executable, "tools/bench_any_teacher.py", "--data",
         os.path.join(shared_data, "aquarium"), "--stages", "^$", "--work-dir",
         str(tmp_path / "work"), "--accuracy-dir", str(tmp_path / "acc")],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout
    assert out.splitlines() == ["label_space: trained or cached: ",
                                "backbone: trained or cached: "]
    assert not (tmp_path / "work").exists() and not (tmp_path / "acc").exists()




def test_the_pairs_reuse_the_accuracy_benchmarks_teacher_and_baselines():
    pairs = load_tool("bench_any_teacher").pairs(["shark", "fish"], "work", "acc")
    label, backbone = pairs["label_space"], pairs["backbone"]
    assert label["teacher_dir"] == os.path.join("acc", "teacher")  # the 7-class teacher
    assert "baseline_dir" not in label  # a 2-class student: baselines of its own
    assert label["val_split"] == ("aquarium_shark_fish_train", "aquarium_shark_fish_val")
    assert label["opts"]["kd"] == ["MODEL.ROI_HEADS.NUM_CLASSES", 2]
    assert backbone["baseline_dir"] == "acc"  # bench_accuracy's baselines
    assert backbone["teacher_dir"] == os.path.join("work", "teacher_effl0")
    assert backbone["configs"]["teacher"].endswith("teacher_effl0.yaml")
