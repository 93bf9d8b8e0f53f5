"""tools/bench_accuracy.py --quick end to end on BCCD (slow: several minutes on 2 cores;
run with -m slow)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
    assert "grad_ratio/loss_hint" in res["diagnostics"]["kd"]
    assert (tmp_path / "work_quick" / "results.png").is_file()
