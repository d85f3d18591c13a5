"""CLI: python -m local_runner
  run PATH [--arg name=value ...] [--input args.json] [--event event.json]   any script or flow
  send FILE|TYPE [--url URL] [--webhook-id ID]                                a signed delivery to make serve
  serve [--data-dir DIR] | demo
  replay [--dry-run] [--status failed] [--webhook-id ID] [--event-type T] [--since T] [--until T]

A configuration error (a missing secret, an unreachable database or API) prints one line
naming the setting and the fix, without a traceback, and exits 2."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from f.dodo.lib.errors import ConfigError

from .runner import Runner, RunnerError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m local_runner")
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run a script or flow with the bundle's variables and resources "
                                      "(environment, WM_LOCAL_CONFIG), print its result and job log")
    run.add_argument("path", help="script or flow path, e.g. f/dodo/doctor or f/dodo/webhook")
    run.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                     help="an input; VALUE is JSON if it parses (5, true, {...}), else a string ($res:f/dodo/postgres)")
    run.add_argument("--input", help="JSON file of inputs (a UI run: no preprocessor); --arg wins")
    run.add_argument("--event", help="flows: JSON file of a trigger event {kind: webhook|http, ...} for the preprocessor")
    run.add_argument("--root", default=".")
    sd = sub.add_parser("send", help="sign a delivery with DODO_WEBHOOK_SECRET and POST it to make serve's webhook")
    sd.add_argument("what", help="a JSON file (an event envelope, or {headers, body}) or an event type "
                                 "(payment.succeeded: the sample in tests/fixtures/deliveries)")
    sd.add_argument("--url", help="default http://127.0.0.1:$PORT/api/w/$WM_WORKSPACE/jobs/run/f/f/dodo/webhook")
    sd.add_argument("--webhook-id", help="default: a fresh msg_local_<hex> (a repeated id is a duplicate)")
    sd.add_argument("--root", default=".")
    sv = sub.add_parser("serve", help="Windmill's HTTP endpoints on 127.0.0.1:$PORT")
    sv.add_argument("--data-dir", help="keep the embedded Postgres's data in this directory between runs "
                                       "(default: throw-away; not with DATABASE_URL)")
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
    try:
        return _dispatch(a)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _dispatch(a) -> int:
    if a.cmd == "send":
        return send(a)
    if a.cmd == "run":
        return run_path(a)
    if a.cmd == "replay":
        return replay(a)
    if a.cmd == "serve":
        from .server import serve  # noqa: PLC0415
        serve(".", data_dir=a.data_dir)
        return 0
    if a.cmd == "demo":
        try:
            from .demo import main as demo  # noqa: PLC0415
        except ImportError:
            print("demo: not yet", file=sys.stderr)
            return 1
        return demo()
    raise AssertionError(a.cmd)


def parse_args(pairs: list[str], input_file: str | None) -> dict:
    """--input file, then each --arg NAME=VALUE (JSON when it parses, else the text)."""
    args = json.loads(Path(input_file).read_text()) if input_file else {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise ConfigError("--arg", f"{pair!r} is not NAME=VALUE", "write it as --arg name=value")
        try:
            args[name] = json.loads(text)
        except ValueError:
            args[name] = text
    return args


def run_path(a) -> int:
    from .config import Config  # noqa: PLC0415
    from .demo import quiet_wmill_client  # noqa: PLC0415

    quiet_wmill_client()
    root = Path(a.root)
    runner = Runner(root, Config.from_env(root=root))
    args = parse_args(a.arg, a.input)
    event = json.loads(Path(a.event).read_text()) if a.event else None
    try:
        if runner.flow_file(a.path).exists():
            out = runner.run_flow(a.path, args, event=event)
        elif event is not None:
            raise RunnerError(f"{a.path} is not a flow: --event is for a flow's preprocessor")
        else:
            out = runner.run_script(a.path, args)
    except RunnerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    error = out.result.get("error") if isinstance(out.result, dict) and not out.success else None
    result = {k: v for k, v in error.items() if k != "stack"} if isinstance(error, dict) else out.result
    print(json.dumps({"success": out.success, "skipped": out.skipped, "result": result if error else out.result,
                      "job_count": out.job_count,
                      "jobs": [{"kind": j.kind, "path": j.path, "step_id": j.step_id, "attempt": j.attempt,
                                "success": j.success} for j in out.jobs]}, indent=2, default=str))
    if isinstance(error, dict):  # one line, no traceback: the message names the setting and the fix
        print(f"error: {error.get('name')}: {error.get('message')}", file=sys.stderr)
    return 0 if out.success else 1


def delivery_body(what: str, root: Path) -> str:
    """The raw body to sign: a file (an envelope, or a {headers, body} delivery), else the
    committed sample delivery of that event type."""
    path = Path(what)
    if not path.exists():
        path = root / "tests" / "fixtures" / "deliveries" / f"{what}.json"
        if not path.exists():
            raise ConfigError("send", f"{what!r} is neither a file nor an event type with a sample",
                              "pass a JSON file or a type such as payment.succeeded")
    data = json.loads(path.read_text(encoding="utf-8"))
    return data["body"] if isinstance(data, dict) and set(data) == {"headers", "body"} else json.dumps(data)


def send(a) -> int:
    import os  # noqa: PLC0415
    import uuid  # noqa: PLC0415
    from datetime import datetime, timezone  # noqa: PLC0415

    import httpx  # noqa: PLC0415

    from f.dodo.lib import selftest  # noqa: PLC0415

    secret = os.environ.get("DODO_WEBHOOK_SECRET")
    if not secret:
        raise ConfigError("DODO_WEBHOOK_SECRET", "not set",
                          "export the secret make serve verifies with (the same variable), e.g. whsec_...")
    url = a.url or (f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/api/w/"
                    f"{os.environ.get('WM_WORKSPACE') or 'demo'}/jobs/run/f/f/dodo/webhook")
    body = delivery_body(a.what, Path(a.root))
    now = datetime.now(timezone.utc)
    msg_id = a.webhook_id or f"msg_local_{uuid.uuid4().hex[:20]}"
    try:
        resp = selftest.post_delivery(url, body, selftest.sign(body, secret, msg_id, now), os.environ.get("WM_TOKEN"))
    except httpx.TransportError as exc:
        raise ConfigError("--url", f"cannot reach {url} ({type(exc).__name__})",
                          "start the server with make serve (PORT and WM_WORKSPACE as there) or pass --url") from None
    print(f"{msg_id} -> {resp.status_code} {resp.text[:200]}")
    return 0 if resp.is_success else 1


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
            "since": a.since, "until": a.until, "status": a.status, "dry_run": a.dry_run, "limit": a.limit}
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
