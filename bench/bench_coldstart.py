"""Cold start of each hot-path script as a fresh Python process, against a bare interpreter.

Windmill runs every job in a new Python process: it imports the script and calls its
`main` (the preprocessor: `preprocessor`) with the job's arguments. Each figure here is
the wall time of such a process, `python -c "import <module>; <module>.main(**args)"`,
doing the real work of one delivery (the preprocessor verifies a fresh signature, the
store writes to Postgres, the sinks write their ledger and outbox), the median of
several runs, next to `python -c pass` measured in the same run, interleaved. The
import alone (`python -c "import <module>"`) is reported too.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

# module, function, arguments builder (see _args)
SCRIPTS = [
    ("f.dodo.webhook__flow.preprocessor", "preprocessor"),
    ("f.dodo.normalize", "main"),
    ("f.dodo.store_event", "main"),
    ("f.dodo.crm.sync_contact", "main"),
    ("f.dodo.notify.send", "main"),
]
CALL = """
import json, sys
args = json.load(open(sys.argv[1]))
import {module} as m
json.dump(m.{fn}(**args), open(sys.argv[2], "w"), default=str)
"""


def _args(module: str, n: int, pg: dict, routing: str) -> dict:
    """One job's arguments, fresh for run `n` (new delivery id, fresh signature)."""
    from fixture_data import FIXTURE_SECRET, envelope, sign  # noqa: PLC0415
    from f.dodo.lib.normalizer import normalize_event  # noqa: PLC0415

    body = json.dumps(envelope("dispute.opened"))  # routed to Slack at once: the sinks do their work
    msg = f"msg_cold_{uuid.uuid4().hex[:12]}_{n}"
    if module.endswith("preprocessor"):
        headers = {k.replace("-", "_"): v for k, v in sign(body, FIXTURE_SECRET, msg).items()}
        return {"event": {"kind": "webhook", "body": json.loads(body), "raw_string": body, "query": {},
                          "headers": headers}}
    if module.endswith("normalize"):
        return {"event": json.loads(body), "webhook_id": msg}
    event = normalize_event(json.loads(body), msg)
    if module.endswith("store_event"):
        return {"event": event, "db": pg}
    if module.endswith("sync_contact"):
        return {"event": event, "hubspot": None, "postgresql": pg}
    return {"event": event, "routing": routing, "postgresql": pg}


def _time(argv: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed: {done.stderr[-800:]}")
    return elapsed


def run(quick: bool) -> dict:
    from f.dodo.lib import db as dblib  # noqa: PLC0415
    from fixture_data import FIXTURE_SECRET  # noqa: PLC0415
    from local_runner.pg_server import start_server  # noqa: PLC0415

    reps = 3 if quick else 9
    pg_server = start_server()
    work = Path(tempfile.mkdtemp(prefix="bench_cold_"))
    try:
        dblib.connect(pg_server.url, "dodo", migrate=True).close()  # migrated once, as `make serve` does at start
        pg = dblib.dsn_to_resource(pg_server.url)
        routing = yaml.safe_load((ROOT / "f/dodo/notify_routing.variable.yaml").read_text())["value"]
        mocked = work / "mocked_api.json"  # what the preprocessor reads through wmill
        mocked.write_text(json.dumps({"variables": {"f/dodo/webhook_secret": FIXTURE_SECRET,
                                                    "f/dodo/webhook_secret_previous": "",
                                                    "f/dodo/webhook_tolerance_s": "",
                                                    "f/dodo/slack_webhook_url": ""}, "resources": {}}))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "WM_WORKSPACE": "bench", "WM_TOKEN": "bench-only",
               "BASE_INTERNAL_URL": "http://127.0.0.1:9", "WM_MOCKED_API_FILE": str(mocked),
               "DODO_OUTBOX": str(work / "outbox.jsonl")}
        py = sys.executable
        bare, full, imports = [], {m: [] for m, _ in SCRIPTS}, {m: [] for m, _ in SCRIPTS}
        _time([py, "-c", "pass"], env)  # warm the page cache for everyone alike
        for n in range(reps):  # interleaved, so load changes hit every series alike
            bare.append(_time([py, "-c", "pass"], env))
            for module, fn in SCRIPTS:
                args, out = work / f"args_{n}.json", work / "result.json"
                args.write_text(json.dumps(_args(module, n, pg, routing)))
                full[module].append(_time([py, "-c", CALL.format(module=module, fn=fn), str(args), str(out)], env))
                imports[module].append(_time([py, "-c", f"import {module}"], env))
    finally:
        pg_server.stop()
    base_ms = round(statistics.median(bare) * 1000, 1)
    rows = [{"name": "cold start: python -c pass (baseline)", "measured": f"{base_ms} ms"}]
    figures = {"repetitions": reps, "bare_interpreter_ms": base_ms, "scripts": {}}
    for module, _ in SCRIPTS:
        run_ms = round(statistics.median(full[module]) * 1000, 1)
        imp_ms = round(statistics.median(imports[module]) * 1000, 1)
        figures["scripts"][module] = {"import_and_run_ms": run_ms, "import_only_ms": imp_ms,
                                      "ratio": round(run_ms / base_ms, 2)}
        rows.append({"name": f"cold start: {module} (import + one job)", "measured": f"{run_ms} ms "
                     f"(import alone {imp_ms} ms)", "baseline_text": f"{base_ms} ms", "ratio": round(run_ms / base_ms, 2)})
    worst = max(v["import_and_run_ms"] for v in figures["scripts"].values())
    return {"name": "coldstart", "figures": figures, "baseline": f"{base_ms} ms (python -c pass)",
            "ratio": round(worst / base_ms, 2), "rows": rows}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
