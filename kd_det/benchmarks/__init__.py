"""Benchmarks: the protocols behind tools/bench_*.py and tools/demo.py, and their reports.

Apart from the library on purpose: ``import kd_det`` never imports this package and no
library module does, so a plugin user pays nothing for it; it is installed with kd_det so
that tools and tests import it without path edits.

- ``orchestrator``: the one way a benchmark runs its stages (seeds, caching and resuming
  by config fingerprint, parallel workers) and, through ``run_report``, writes its results
  JSON after every stage;
- ``report``: the JSON + PNG of a results dict, chart panels and table cells;
- ``machine``, ``timing``: what timings depend on, measured; round-robin timing;
- ``detection``: teacher / baseline / distilled student (``make demo``, BCCD);
  ``speed``: the cost of a DistillRCNN step;
- ``classification``, ``face``, ``sr``: the auxiliary methods' benchmarks.
"""
