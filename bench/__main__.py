"""Run every benchmark module and write bench/results.json and bench/results.md.

Each `bench/bench_*.py` exposes `run(quick: bool) -> dict` with at least `name`,
`figures` (what was measured), `baseline` and `ratio`. Ratios, not absolute times,
are what compare across machines.

`python -m bench --update NAME...` runs only the named benchmarks and replaces their
entries in results.json (the others kept as they were, each entry saying when and under
what load it was measured), then rewrites results.md from it.
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
        result["module"] = name
        result["measured_at"] = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                 "load_average": [round(x, 2) for x in os.getloadavg()], "quick": quick}
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


def _module(result: dict) -> str:
    """The bench module an entry of results.json came from (older entries: by their name)."""
    name = result.get("module") or result["name"]
    return name if name.startswith("bench_") else f"bench_{name}"


def merge(previous: list[dict], fresh: list[dict]) -> list[dict]:
    """`previous` with the entries of the modules in `fresh` replaced by them, in module order."""
    by_module = {_module(r): r for r in previous} | {_module(r): r for r in fresh}
    return [by_module[m] for m in sorted(by_module)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--update", action="store_true",
                        help="write the named benchmarks' new entries into results.json/results.md, keep the others")
    parser.add_argument("only", nargs="*", help="substrings of benchmark names to run")
    args = parser.parse_args()
    if args.update and not args.only:
        parser.error("--update needs the names of the benchmarks to re-run")
    results = run_all(discover(args.only), args.quick)
    meta = {"python": sys.version.split()[0], "machine": platform.machine(), "cores": os.cpu_count(),
            "load_average": os.getloadavg(),  # other work on the machine skews absolute times
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "quick": args.quick}
    if args.update:
        stored = json.loads((HERE / "results.json").read_text())
        meta, results = stored["meta"], merge(stored["results"], results)
    if args.update or not args.only:
        (HERE / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=str))
        (HERE / "results.md").write_text(to_markdown(results))
    print(to_markdown(results))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
