"""README tables made from a results JSON must be what the JSON gives, so that text and
numbers cannot drift apart."""
import json
import os

import pytest

from kd_det.benchmarks.detection import results_table

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


@pytest.mark.parametrize("json_path", ["results/demo.json"])
def test_readme_table_equals_results_json(json_path):
    table = results_table(json.loads(_read(json_path)))
    assert table in _read("README.md"), (
        f"README.md has no table equal to results_table({json_path}):\n{table}")


def test_results_table_reflects_a_changed_number():
    results = json.loads(_read("results/demo.json"))
    results["kd"]["AP50"] = [v + 1.0 for v in results["kd"]["AP50"]]
    assert results_table(results) not in _read("README.md")
