"""Run every benchmark module and write bench/results.json and bench/results.md.

Each `bench/bench_*.py` exposes `run(quick: bool) -> dict` with at least `name`,
`figures` (what was measured), `baseline` and `ratio`. Ratios, not absolute times,
are what compare across machines.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import pathlib
import platform
import sys
import time
import traceback

HERE = pathlib.Path(__file__).parent


def discover(only: list[str]) -> list[str]:
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    return [n for n in names if not only or any(o in n for o in only)]


def run_all(names: list[str], quick: bool) -> list[dict]:
    results = []
    for name in names:
        started = time.perf_counter()
        try:
            result = importlib.import_module(f"bench.{name}").run(quick=quick)
        except Exception as exc:  # one broken benchmark must not hide the others
            traceback.print_exc()
            result = {"name": name, "error": f"{type(exc).__name__}: {exc}"}
        result["seconds"] = round(time.perf_counter() - started, 2)
        print(json.dumps(result, indent=2, default=str), flush=True)
        results.append(result)
    return results


def to_markdown(results: list[dict]) -> str:
    lines = ["| benchmark | measured | baseline | ratio |", "|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['name']} | error: {r['error']} | | |")
            continue
        for row in r.get("rows", [r]):
            lines.append(f"| {row.get('name', r['name'])} | {row.get('measured', '')} "
                         f"| {row.get('baseline_text', row.get('baseline', ''))} | {row.get('ratio', '')} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("only", nargs="*", help="substrings of benchmark names to run")
    args = parser.parse_args()
    results = run_all(discover(args.only), args.quick)
    meta = {"python": sys.version.split()[0], "machine": platform.machine(), "cores": os.cpu_count(),
            "load_average": os.getloadavg(),  # other work on the machine skews absolute times
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "quick": args.quick}
    if not args.only:
        (HERE / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=str))
        (HERE / "results.md").write_text(to_markdown(results))
    print(to_markdown(results))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
