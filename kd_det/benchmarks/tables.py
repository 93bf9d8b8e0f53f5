"""The Markdown tables of a results JSON: the one source of every table in README.md and
docs/ that comes from results/, printed by tools/report.py and checked by a test, so that
text and numbers cannot drift apart.

A Markdown file holds such tables between `<!-- report: results/X.json -->` and
`<!-- /report -->` (`<!-- report: results/X.json first -->`: the first table only, for the
README); `render_blocks` rewrites what is between from the JSON.

Each benchmark writes its own JSON layout; `tables` tells them apart by the keys only
that benchmark writes, and hands the JSON to that benchmark's table function.
"""
import json
import os
import re
from typing import Callable, Dict, List, Tuple

from . import classification, deploy, detection, face, sr

__all__ = ["tables", "provenance", "speed_table", "render_blocks", "KINDS"]


def speed_table(results: Dict) -> str:
    """tools/bench_speed.py's JSON: the four steps, the two ratios and the peak RSS."""
    rows = [("(a) student step", f"{results['student_step_s']:.3f}"),
            ("(b) teacher work KD needs", f"{results['teacher_forward_s']:.3f}"),
            ("(c) DistillRCNN step", f"{results['kd_step_s']:.3f}"),
            ("(d) naive KD step", f"{results['naive_kd_step_s']:.3f}"),
            ("**c / (a + b)** (target ≤ 1.10)", f"**{results['overhead_ratio']:.2f}**"),
            ("**d / c** (target ≥ 1.3)", f"**{results['naive_over_kd']:.2f}**"),
            ("peak RSS (MiB, whole process)", f"{results['peak_rss_mb']:.0f}")]
    if "overhead_ratio_per_round" in results:
        q = results["overhead_ratio_per_round"]
        rows.insert(5, ("c / (a + b) per round: median [q1, q3]",
                        f"{q['median']:.2f} [{q['q1']:.2f}, {q['q3']:.2f}]"))
    for name, cost in results.get("term_costs", {}).items():
        label = "every KD term" if name == "all_terms" else f"`{name}`"
        rows.append((f"cost of {label} (s / step)", f"{cost['median_s']:.3f}"))
    head = (f"| step (s, median of {results['iters']}) | {results['device']}, "
            f"{results['threads']} thread(s), {results.get('num_teachers', 1)} teacher(s)"
            f"{', AMP' if results.get('amp') else ''} |")
    return "\n".join([head, "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])


def multi_teacher_table(results: Dict) -> str:
    """tools/bench_multi_teacher.py's JSON: the test rows, one teacher against two."""
    return detection.results_table(
        results, rows=("teacher", "baseline", "kd_single", "kd_two_teachers"))


def any_teacher_table(results: Dict) -> str:
    """tools/bench_any_teacher.py's JSON: per pair, its comparison's tables."""
    return "\n\n".join(f"**{name}** ({results['protocol'][name]})\n\n"
                       + detection.format_table(r) for name, r in results["pairs"].items())


# (what only this benchmark's JSON has, its table function), the first match wins.
KINDS: List[Tuple[Callable[[Dict], bool], Callable[[Dict], str]]] = [
    (lambda r: "pairs" in r, any_teacher_table),
    (lambda r: "kd_two_teachers" in r, multi_teacher_table),
    (lambda r: "student_step_s" in r, speed_table),
    (lambda r: "flops" in r and "protocol" in r, detection.format_table),
    (lambda r: "plateau_check" in r, face.format_tables),
    (lambda r: "bicubic" in r, lambda r: sr.markdown_table(
        r, [s for s in r["bicubic"] if s != "val"])),
    (lambda r: "MEAL V2" in r, classification.format_table),
    (lambda r: "rows" in r and "headline" in r, deploy.deploy_table),
]


def provenance(results: Dict) -> str:
    """The code a results JSON came from, as a line under its tables."""
    if results.get("commit"):
        dirty = "" if results.get("tree_clean") else ", with uncommitted changes"
        return f"<sub>Produced at commit {results['commit'][:7]}{dirty}.</sub>"
    if results.get("committed_in"):
        return (f"<sub>Committed in {results['committed_in'][:7]}: produced at that commit "
                "or an earlier one.</sub>")
    return "<sub>The commit that produced these numbers is not recorded.</sub>"


def tables(results: Dict) -> str:
    """The Markdown of `results`, whichever benchmark wrote it, and the code it came from
    (left out of a block that shows the first table only)."""
    for matches, table in KINDS:
        if matches(results):
            return f"{table(results)}\n\n{provenance(results)}"
    raise ValueError("not a results JSON of a kd_det benchmark (keys: "
                     f"{', '.join(sorted(results)[:12])}); tools/report.py reads the JSONs "
                     "in results/")



_BLOCK = re.compile(r"(<!-- report: (\S+)( first)? -->\n)(.*?)(<!-- /report -->)", re.S)


def render_blocks(text: str, root: str = ".") -> str:
    """`text` with every report block's content made from its JSON (a path from `root`)."""
    def render(match):
        with open(os.path.join(root, match.group(2))) as f:
            text = tables(json.load(f))
        if match.group(3):
            text = text.split("\n\n")[0]
        return f"{match.group(1)}{text}\n{match.group(5)}"

    return _BLOCK.sub(render, text)
