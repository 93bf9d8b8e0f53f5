"""tools/bench_any_teacher.py builds every stage of both pairs on Aquarium (its configs, the
class-subset datasets, the shared teacher and baseline folders) without training any."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_both_pairs_build_their_stages(shared_data, tmp_path):
    out = subprocess.run(
        [sys.executable, "tools/bench_any_teacher.py", "--data",
         os.path.join(shared_data, "aquarium"), "--stages", "^$", "--work-dir",
         str(tmp_path / "work"), "--accuracy-dir", str(tmp_path / "acc")],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout
    assert out.splitlines() == ["label_space: trained or cached: ",
                                "backbone: trained or cached: "]
    assert not (tmp_path / "work").exists() and not (tmp_path / "acc").exists()
