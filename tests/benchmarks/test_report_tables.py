"""Tables in README.md and docs/ that come from a results JSON are what tools/report.py
prints for it, so that text and numbers cannot drift apart."""
import glob
import json
import os
import re
import statistics
import subprocess
import sys

import pytest

from kd_det.benchmarks.tables import render_blocks, tables

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGES = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(
    os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))


def _read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


@pytest.mark.parametrize("page", PAGES)
def test_every_report_block_equals_its_json(page):
    text = _read(page)
    assert render_blocks(text, ROOT) == text, (
        f"{page} has a table that differs from its JSON: python tools/report.py --write {page}")


def test_every_results_json_has_a_table_and_the_pages_show_them():
    shown = "".join(_read(p) for p in PAGES)
    for path in sorted(glob.glob(os.path.join(ROOT, "results", "*.json"))):
        with open(path) as f:
            assert tables(json.load(f)).startswith("| ")
        assert f"<!-- report: results/{os.path.basename(path)}" in shown, path


def test_every_results_json_names_the_code_it_came_from():
    """The producing commit and whether the tree was clean; a JSON older than that record
    names the commit that last wrote it (an upper bound), and says so."""
    for path in sorted(glob.glob(os.path.join(ROOT, "results", "*.json"))):
        with open(path) as f:
            res = json.load(f)
        assert "commit" in res and "tree_clean" in res, path
        if res["commit"] is None:
            assert re.fullmatch(r"[0-9a-f]{40}", res["committed_in"]) and res["provenance"], path


def test_a_changed_number_makes_the_block_stale(tmp_path):
    results = json.loads(_read("results/demo.json"))
    results["kd"]["AP50"] = [v + 1.0 for v in results["kd"]["AP50"]]
    shifted = f"{statistics.fmean(results['kd']['AP50']):.1f} ± "
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "demo.json").write_text(json.dumps(results))
    page = tmp_path / "page.md"
    block = _read("README.md").split("<!-- report: results/demo.json first -->")[1]
    page.write_text("<!-- report: results/demo.json first -->" + block.split("\n\n")[0])
    rendered = render_blocks(page.read_text(), str(tmp_path))
    assert rendered != page.read_text() and f"| kd | {shifted}" in rendered
    tool = os.path.join(ROOT, "tools", "report.py")
    check = subprocess.run([sys.executable, tool, "--check", "page.md"], cwd=tmp_path,
                           capture_output=True, text=True)
    assert check.returncode == 1 and "page.md: stale" in check.stdout
    subprocess.run([sys.executable, tool, "--write", "page.md"], cwd=tmp_path, check=True)
    assert page.read_text() == rendered


def test_an_unknown_json_is_refused_naming_its_keys():
    with pytest.raises(ValueError, match="not a results JSON .*keys: a, b"):
        tables({"a": 1, "b": 2})


def test_each_table_says_which_code_made_it():
    from kd_det.benchmarks.tables import provenance

    assert provenance({"commit": "a" * 40, "tree_clean": True}) == (
        "<sub>Produced at commit aaaaaaa.</sub>")
    assert "with uncommitted changes" in provenance({"commit": "a" * 40, "tree_clean": False})
    assert provenance({"commit": None, "committed_in": "b" * 40}).startswith(
        "<sub>Committed in bbbbbbb: produced at that commit or an earlier one")
    with open(os.path.join(ROOT, "results", "speed_cpu.json")) as f:
        res = json.load(f)
    full = tables(res)
    assert full.endswith(provenance(res))
    block = "<!-- report: results/speed_cpu.json first -->\n<!-- /report -->"
    assert provenance(res) not in render_blocks(block, ROOT)  # the README's first table only
