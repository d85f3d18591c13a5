"""CLI: python -m local_runner run <flow path> [--input args.json] [--event event.json] | serve | demo"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .runner import Runner, RunnerError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m local_runner")
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run a flow, print its result and job log")
    run.add_argument("path", help="flow path, e.g. f/dodo/webhook")
    run.add_argument("--input", help="JSON file of flow inputs (a UI run: no preprocessor)")
    run.add_argument("--event", help="JSON file of a trigger event {kind: webhook|http, ...} for the preprocessor")
    run.add_argument("--root", default=".")
    sub.add_parser("serve", help="Windmill's HTTP endpoints on 127.0.0.1:$PORT")
    sub.add_parser("demo", help="the end-to-end demo")
    a = p.parse_args(argv)
    if a.cmd == "serve":
        from .server import serve  # noqa: PLC0415
        serve(".")
        return 0
    if a.cmd == "demo":
        try:
            from .demo import main as demo  # noqa: PLC0415
        except ImportError:
            print("demo: not yet", file=sys.stderr)
            return 1
        return demo()
    args = json.loads(Path(a.input).read_text()) if a.input else {}
    event = json.loads(Path(a.event).read_text()) if a.event else None
    try:
        out = Runner(a.root).run_flow(a.path, args, event=event)
    except RunnerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"success": out.success, "skipped": out.skipped, "result": out.result,
                      "job_count": out.job_count,
                      "jobs": [{"kind": j.kind, "path": j.path, "step_id": j.step_id, "attempt": j.attempt,
                                "success": j.success} for j in out.jobs]}, indent=2, default=str))
    return 0 if out.success else 1


if __name__ == "__main__":
    sys.exit(main())
