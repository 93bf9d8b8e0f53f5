"""The library stands apart from the benchmarks: importing kd_det and every library
subpackage loads nothing from kd_det.benchmarks or tools/."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_library_never_imports_the_benchmarks():
    code = ("import sys, kd_det, kd_det.engine, kd_det.auxiliary.classification, "
            "kd_det.auxiliary.face, kd_det.auxiliary.sr\n"
            "bad = [m for m in sys.modules if m.startswith('kd_det.benchmarks')\n"
            "       or m.split('.')[0] in ('tools', 'train_net', 'bench_accuracy')]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
