#!/usr/bin/env python
"""The Markdown tables of a results JSON, or the Markdown files whose tables come from one.

    python tools/report.py results/bccd_accuracy.json     # print its tables
    python tools/report.py --write README.md docs/results/*.md   # rewrite their report blocks
    python tools/report.py --check README.md docs/results/*.md   # exit 1 if one is stale

A report block is `<!-- report: results/X.json -->`, the table, `<!-- /report -->`: the
table is always what this tool prints for that JSON (kd_det.benchmarks.tables).
"""
import argparse
import json
import sys

from kd_det.benchmarks.tables import render_blocks, tables


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+",
                   help="a results JSON, or Markdown files with --write / --check")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the files' report blocks")
    mode.add_argument("--check", action="store_true",
                      help="fail when a file's report block differs from its JSON")
    args = p.parse_args(argv)
    if not (args.write or args.check):
        for path in args.files:
            with open(path) as f:
                print(tables(json.load(f)))
        return 0
    stale = []
    for path in args.files:
        with open(path) as f:
            text = f.read()
        new = render_blocks(text)
        if new != text:
            stale.append(path)
            if args.write:
                with open(path, "w") as f:
                    f.write(new)
    for path in stale:
        print(f"{path}: {'rewritten' if args.write else 'stale, run tools/report.py --write'}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
