"""CLI: python -m local_runner run <flow path> [--input args.json] [--event event.json] | serve | demo
| replay [--dry-run] [--status failed] [--webhook-id ID] [--event-type T] [--since T] [--until T]"""
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
    rp = sub.add_parser("replay", help="re-run failed deliveries through f/dodo/webhook (the f/dodo/replay script; "
                                       "DATABASE_URL and the integrations from the environment)")
    rp.add_argument("--dry-run", action="store_true", help="list what would be replayed; change nothing")
    rp.add_argument("--status", action="append", choices=["failed", "received"], help="repeatable; default failed")
    rp.add_argument("--webhook-id", action="append", help="repeatable")
    rp.add_argument("--event-type", action="append", help="repeatable; * is a wildcard (dispute.*)")
    rp.add_argument("--since", default="", help="event time >= this ISO 8601 instant")
    rp.add_argument("--until", default="", help="event time < this ISO 8601 instant")
    rp.add_argument("--limit", type=int, default=100)
    rp.add_argument("--root", default=".")
    a = p.parse_args(argv)
    if a.cmd == "replay":
        return replay(a)
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


def progress_bar(out=sys.stderr, width: int = 30):
    """An on_progress hook drawing a text progress bar on one line."""
    def show(_job_id: str, percent: int) -> None:
        filled = width * percent // 100
        out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {percent:3d}%")
        out.flush()
    return show


def print_rows(rows: list[dict], columns: list[str], out=print) -> None:
    widths = {c: max([len(c)] + [len(str(r.get(c) or "")) for r in rows]) for c in columns}
    out("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        out("  ".join(str(r.get(c) or "").ljust(widths[c]) for c in columns))


def replay(a) -> int:
    import logging  # noqa: PLC0415
    import os  # noqa: PLC0415

    from .config import Config  # noqa: PLC0415
    if not os.environ.get("DATABASE_URL"):
        print("replay: set DATABASE_URL to the database the bundle records into", file=sys.stderr)
        return 2
    logging.getLogger("windmill_client").setLevel(logging.CRITICAL)  # it logs every expected 404
    bar = progress_bar()
    runner = Runner(a.root, Config.from_env(root=a.root), on_progress=bar)
    args = {"db": "$res:f/dodo/postgres", "webhook_ids": a.webhook_id, "event_types": a.event_type,
            "since": a.since, "until": a.until, "status": a.status, "dry_run": a.dry_run, "limit": a.limit,
            "schema": os.environ.get("DODO_SCHEMA", "dodo")}
    out = runner.run_script("f/dodo/replay", args)
    if not out.success:
        print(f"replay failed: {out.result['error']['message']}", file=sys.stderr)
        return 1
    parts = out.result["render_all"]
    rows = parts[1].get("table-row-object", [])
    if rows and not a.dry_run:
        bar("", 100)
        print(file=sys.stderr)
    print(parts[0]["markdown"].lstrip("# "))
    if a.dry_run:
        print_rows(rows, ["webhook_id", "event_type", "occurred_at", "status", "attempts", "failed_step", "done",
                          "to_retry", "last_error"])
    else:
        print_rows(rows, ["webhook_id", "event_type", "occurred_at", "status_before", "status", "sent_now",
                          "done", "to_retry", "last_error"])
    return 0 if a.dry_run or all(r["success"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
