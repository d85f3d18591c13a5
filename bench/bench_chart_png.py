"""The revenue report's PNG for Slack: what drawing it costs the daily report job.

Each case is a fresh process (as a Windmill job is), its CPU (user + sys of the child)
divided by that of `python -c pass` measured in the same round; rounds are interleaved
(bare, then each case) and the median of the per-round ratios is reported:

- import: `import resvg_py, font_roboto` (what f/dodo/lib/svgchart.png imports);
- render: that import plus drawing the report's chart for three currencies as PNG;
- matplotlib: `import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot`, the
  alternative (it would redraw the chart rather than convert the SVG), only when
  `--matplotlib-python PYTHON` names an interpreter that has it (the bundle does not).

`python -m bench.bench_chart_png [--rounds N] [--matplotlib-python PYTHON]`.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RENDER = """
from datetime import date
from f.dodo.lib.svgchart import png, revenue_chart
series = {c: [(i * 7919) % 90000 for i in range(30)] for c in ("JPY", "KWD", "USD")}
png(revenue_chart(series, date(2026, 11, 29), "Gross revenue per day, last 30 days (UTC)"))
"""
MATPLOTLIB = "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot"


def cpu(python: str, code: str) -> float:
    """CPU seconds (user + sys) of one fresh interpreter running `code`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([python, "-c", code], cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run(quick: bool = True, rounds: int | None = None, matplotlib_python: str | None = None) -> dict:
    rounds = rounds or (5 if quick else 15)
    cases = {"import": (sys.executable, "import resvg_py, font_roboto"), "render": (sys.executable, RENDER)}
    if matplotlib_python:
        cases["matplotlib"] = (matplotlib_python, MATPLOTLIB)
    ratios: dict[str, list[float]] = {name: [] for name in cases}
    bare_s = []
    for _ in range(rounds):
        for name, (python, code) in cases.items():
            bare = cpu(python, "pass")
            bare_s.append(bare)
            ratios[name].append(cpu(python, code) / bare)
    medians = {name: round(statistics.median(v), 1) for name, v in ratios.items()}
    rows = [{"name": f"report chart PNG: {name} (x `python -c pass`, median of {rounds} interleaved rounds)",
             "measured": f"{medians[name]}x", "baseline_text": f"python -c pass: {statistics.median(bare_s) * 1000:.1f} ms CPU",
             "ratio": medians[name]} for name in cases]
    return {"name": Path(__file__).stem, "figures": {"ratios": medians, "rounds": rounds},
            "baseline": "python -c pass in the same round", "ratio": medians["render"], "rows": rows}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--matplotlib-python")
    a = parser.parse_args()
    print(json.dumps(run(quick=False, rounds=a.rounds, matplotlib_python=a.matplotlib_python), indent=2))
