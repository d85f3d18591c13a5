"""Peak memory of processing N deliveries through the entry flow, against a bare interpreter.

Each figure is the peak resident set (VmHWM) of a fresh child process, measured in
the same run: a bare interpreter (the baseline), the local runner after one delivery,
and after N deliveries (every fixture event type, fresh delivery ids and signatures,
through the full flow f/dodo/webhook: preprocessor, normalise + record in Postgres, CRM
and notifications to the outbox). The difference between 1 and N shows whether memory
grows with the number of events. The Postgres server is a separate process, not counted.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# VmHWM, the peak RSS of this process image (what Windmill reports as a job's mem_peak).
# Not ru_maxrss: Linux carries it over from the forking parent across exec.
PEAK = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1])"
BARE = f"print({PEAK})"
RUNNER = """
import json, sys
sys.path[:0] = [{root!r}, {tests!r}]
from fixture_data import FIXTURE_SECRET, all_deliveries, sign
from local_runner import Runner
from local_runner.demo import ROOT, bundle_config, quiet_wmill_client
from local_runner.server import apply_migrations
quiet_wmill_client()
config = bundle_config({url!r}, FIXTURE_SECRET)
apply_migrations(config)  # as make serve does at start: the jobs only check the schema version
runner = Runner(ROOT, config, sleep=lambda s: None)
bodies = [d["body"] for _, d in all_deliveries()]
failed, first_error = 0, None
for i in range({n}):
    body = bodies[i % len(bodies)]
    headers = {{k.replace("-", "_"): v for k, v in sign(body, FIXTURE_SECRET, f"msg_mem_{tag}_{{i}}").items()}}
    run = runner.run_flow("f/dodo/webhook", event={{"kind": "webhook", "body": json.loads(body), "raw_string": body,
                                                    "query": {{}}, "headers": headers}})
    failed += not run.success
    first_error = first_error or (None if run.success else str(run.result)[:300])
print(json.dumps({{"maxrss_kb": {peak}, "failed": failed, "first_error": first_error}}))
"""


def _child(code: str, env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-800:])
    last = done.stdout.strip().splitlines()[-1]
    return json.loads(last) if last.startswith("{") else {"maxrss_kb": int(last), "failed": 0}


def run(quick: bool) -> dict:
    sys.path.insert(0, str(ROOT))
    from local_runner.pg_server import start_server  # noqa: PLC0415

    n = 200 if quick else 1000
    pg = start_server()
    env = {**os.environ, "DODO_OUTBOX": str(Path(tempfile.mkdtemp(prefix="bench_mem_")) / "outbox.jsonl")}
    try:
        bare = _child(BARE, env)["maxrss_kb"]
        fill = dict(root=str(ROOT), tests=str(ROOT / "tests"), url=pg.url, peak=PEAK)
        one = _child(RUNNER.format(n=1, tag="one", **fill), env)
        many = _child(RUNNER.format(n=n, tag="many", **fill), env)
    finally:
        pg.stop()
    if one["failed"] or many["failed"]:
        raise RuntimeError(f"{one['failed'] + many['failed']} deliveries failed, the first: "
                           f"{one['first_error'] or many['first_error']}")
    mb = lambda kb: round(kb / 1024, 1)  # noqa: E731
    growth = round((many["maxrss_kb"] - one["maxrss_kb"]) / (n - 1), 2)
    ratio = round(many["maxrss_kb"] / bare, 2)
    figures = {"events": n, "bare_interpreter_mb": mb(bare), "runner_1_event_mb": mb(one["maxrss_kb"]),
               f"runner_{n}_events_mb": mb(many["maxrss_kb"]), "growth_kb_per_event": growth}
    rows = [
        {"name": "peak RSS: bare interpreter (baseline)", "measured": f"{mb(bare)} MB"},
        {"name": "peak RSS: runner, 1 delivery", "measured": f"{mb(one['maxrss_kb'])} MB",
         "baseline_text": f"{mb(bare)} MB", "ratio": round(one["maxrss_kb"] / bare, 2)},
        {"name": f"peak RSS: runner, {n} deliveries", "measured": f"{mb(many['maxrss_kb'])} MB "
         f"({growth} KB/event over 1 delivery)", "baseline_text": f"{mb(bare)} MB", "ratio": ratio},
    ]
    return {"name": "memory", "figures": figures, "baseline": f"{mb(bare)} MB (bare interpreter)",
            "ratio": ratio, "rows": rows}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
