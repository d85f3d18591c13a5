"""CPU of one event on Windmill: every Python job of the entry flow as a fresh process.

The entry flow `f/dodo/webhook` runs through the local runner with each script job run
the way a Windmill worker runs it (bench/wm_jobs.py: a new job directory, `args.json`
with the arguments the flow gives that job, the worker's wrapper and loader, the library
modules fetched over HTTP, `wmill` calls over HTTP, `json.dumps` of the result). Each
job's CPU (user + sys of the finished process) is summed per event:

- recorded: a fresh signed `dispute.opened` with HubSpot, Slack and SMTP configured
  (loopback stand-ins), so the CRM and two notification channels do their work;
- duplicate: the same delivery again (same webhook-id, new signature);
- forged: a body signed with the wrong secret.

A postgresql script step (`.pg.sql`) runs in Windmill's worker itself, no process: it runs
in process here, counts as a Windmill job, adds no CPU to the sum and is reported as
`sql_jobs` ("native SQL").

Each sum is divided by the CPU of `python -c pass` measured in the same round
(interleaved: bare, recorded, bare, duplicate, bare, forged; each "bare" the mean of
BARE_SAMPLES starts), and the median over rounds is reported, with the Windmill job count of each event (the runner's, which
copies worker_flow.rs). `--compare DIR` (run as `python -m bench.bench_coldstart
--compare DIR`) also runs another checkout of the bundle in the same rounds, e.g. the
commit before a change, for figures side by side from one run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOW = "f/dodo/webhook"
EVENT = "dispute.opened"  # routed at once to Slack and e-mail, and a CRM timeline note
# "direct": the library imported from the checkout (bytecode cached), as `python -c "import
# script; script.main(...)"` would, plus the worker's wrapper; "windmill": through the
# worker's loader, each library module fetched over HTTP and compiled in every job.
MODES = ("direct", "windmill")
# `python -c pass` costs either ~10 or ~15 ms of CPU on this machine, about half the time
# each (two modes, whichever core or frequency the process lands on), while an event's
# several processes average over both: one bare sample per round made the per-round
# ratio swing by half. The baseline of a round is the mean of this many bare starts.
BARE_SAMPLES = 6


def _webhook_event(body: str, headers: dict) -> dict:
    """The preprocessor's event for a webhook trigger with raw=true and include_header."""
    return {"kind": "webhook", "body": json.loads(body), "raw_string": body, "query": {},
            "headers": {k.replace("-", "_"): v for k, v in headers.items()}}


def _deliveries(secret: str) -> dict[str, dict]:
    """One round's trigger events: recorded, its duplicate, a forged one."""
    from tests.fixture_data import envelope, sign  # noqa: PLC0415

    env = envelope(EVENT)
    env["data"]["dispute_id"] = f"dsp_cold_{uuid.uuid4().hex[:10]}"
    body = json.dumps(env)
    wid = f"msg_cold_{uuid.uuid4().hex[:16]}"
    forged_secret = "whsec_" + "Zm9yZ2VkLXNlY3JldC1mb3ItYmVuY2g="  # base64("forged-secret-for-bench")
    return {"recorded": _webhook_event(body, sign(body, secret, wid)),
            "duplicate": _webhook_event(body, sign(body, secret, wid)),
            "forged": _webhook_event(body, sign(body, forged_secret, wid + "_forged"))}


class _Tree:
    """One checkout of the bundle, its database, its runner."""

    def __init__(self, label: str, root: Path, loader: bool, pg_url: str, standins, smtp, work: Path):
        from f.dodo.lib import db  # noqa: PLC0415
        from local_runner.config import Config, bundle_variables  # noqa: PLC0415
        from tests.fixture_data import FIXTURE_SECRET  # noqa: PLC0415
        from bench.soak_standins import HUBSPOT_TOKEN, SLACK_TOKEN  # noqa: PLC0415
        from bench.wm_jobs import TOKEN, ProcessRunner, WindmillApi  # noqa: PLC0415

        self.label, self.root = label, root
        name = f"cold_{label.replace('/', '_')}_{uuid.uuid4().hex[:6]}"
        with db.connect(pg_url, check=False) as admin:
            admin.execute(f"CREATE DATABASE {db.ident(name)}")
        url = pg_url.rsplit("/", 1)[0] + "/" + name
        db.connect(url, "dodo", migrate=True).close()  # the deployment's migration step
        self.secret = FIXTURE_SECRET
        config = Config(workspace="bench")
        config.variables.update(bundle_variables(root))  # notify_routing, as pushed
        routing = json.loads(config.variables["f/dodo/notify_routing"])
        routing["email_to"] = ["ops@example.com"]  # e-mail configured too: dispute.opened goes to Slack and e-mail
        config.variables["f/dodo/notify_routing"] = json.dumps(routing)
        config.variables["f/dodo/webhook_secret"] = FIXTURE_SECRET
        config.resources.update({
            "f/dodo/postgres": dict(db.dsn_to_resource(url)),
            "f/dodo/hubspot": {"token": HUBSPOT_TOKEN},
            "f/dodo/slack": {"token": SLACK_TOKEN},
            "f/dodo/smtp": {"host": "127.0.0.1", "port": smtp.port},
        })
        self.api = WindmillApi(root, config)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), "TZ": "UTC",
               "WM_TOKEN": TOKEN, "WM_WORKSPACE": "bench", "BASE_INTERNAL_URL": self.api.url,
               "BASE_URL": self.api.url, "DODO_OUTBOX": str(work / f"outbox_{name}.jsonl"),
               "DODO_HUBSPOT_API_URL": standins.url, "DODO_SLACK_API_URL": standins.url + "/api",
               "DODO_TWILIO_API_URL": standins.url}
        self.runner = ProcessRunner(root, config, env, loader=loader)

    def event(self, kind: str, trigger: dict) -> dict:
        """CPU and jobs of one event; checks it ended as that kind of event ends."""
        first, first_sql = len(self.runner.costs), len(self.runner.sql_jobs)
        run = self.runner.run_flow(FLOW, event=trigger)
        costs, sql_jobs = self.runner.costs[first:], self.runner.sql_jobs[first_sql:]
        ok = {"recorded": run.success and not run.skipped, "duplicate": run.success and run.skipped,
              "forged": not run.success}[kind]
        if not ok:
            raise RuntimeError(f"{self.label} {kind}: unexpected end: success={run.success} skipped={run.skipped} "
                               f"result={json.dumps(run.result, default=str)[:600]}; failed jobs: "
                               f"{[(c.step_id, c.error) for c in costs + sql_jobs if not c.success]}")
        return {"cpu_ms": sum(c.cpu_ms for c in costs), "jobs": run.job_count, "python_jobs": len(costs),
                "sql_jobs": len(sql_jobs), "steps": {c.step_id or c.label: c.cpu_ms for c in costs}}

    def close(self) -> None:
        self.api.close()


def _median(values) -> float:
    return round(statistics.median(values), 2)


def run(quick: bool, compare: Path | None = None, rounds: int | None = None) -> dict:
    from bench.soak_standins import HttpStandIns, SmtpStandIn  # noqa: PLC0415
    from bench.wm_jobs import bare_cpu_ms  # noqa: PLC0415
    from local_runner.pg_server import start_server  # noqa: PLC0415

    rounds = rounds or (3 if quick else 21)  # 11 rounds swung by ±1x between runs here
    kinds = ("recorded", "duplicate", "forged")
    pg, standins, smtp = start_server(), HttpStandIns(), SmtpStandIn()
    work = Path(tempfile.mkdtemp(prefix="bench_cold_"))
    roots = [("ships", ROOT)] + ([("compare", Path(compare).resolve())] if compare else [])
    trees = [_Tree(f"{name}/{mode}", root, mode == "windmill", pg.url, standins, smtp, work)
             for name, root in roots for mode in MODES]
    bare_env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    samples = {t.label: {k: [] for k in kinds} for t in trees}
    bare: list[float] = []
    try:
        for r in range(rounds + 1):  # round 0 warms the page cache and the server's plans: not counted
            events = _deliveries(trees[0].secret)
            for kind in kinds:
                b = statistics.fmean(bare_cpu_ms(bare_env) for _ in range(BARE_SAMPLES))
                for tree in trees:  # each tree has its own database: the same deliveries serve both
                    got = tree.event(kind, events[kind])
                    if r:
                        samples[tree.label][kind].append((got, b))
                if r:
                    bare.append(b)
    finally:
        for t in trees:
            t.close()
        standins.close()
        smtp.close()
        pg.stop()
    if not (standins.contacts and (standins.slack or standins.unattributed) and
            (smtp.received or smtp.unattributed)):
        raise RuntimeError("the recorded events did not reach HubSpot, Slack and SMTP: the figure would not be real")
    base = _median(bare)
    figures: dict = {"rounds": rounds, "event": EVENT, "bare_interpreter_cpu_ms": base}
    rows = [{"name": "coldstart: python -c pass (baseline, CPU)", "measured": f"{base} ms"}]
    for tree in trees:
        per = {}
        for kind in kinds:
            s = samples[tree.label][kind]
            ratio = _median(g["cpu_ms"] / b for g, b in s)
            steps = {step: _median(g["steps"][step] for g, _ in s if step in g["steps"]) for step in s[0][0]["steps"]}
            per[kind] = {"cpu_ms": _median(g["cpu_ms"] for g, _ in s), "ratio": ratio, "jobs": s[0][0]["jobs"],
                         "python_jobs": s[0][0]["python_jobs"], "sql_jobs": s[0][0]["sql_jobs"],
                         "steps_cpu_ms": steps}
            sql = f", {per[kind]['sql_jobs']} native SQL" if per[kind]["sql_jobs"] else ""
            rows.append({"name": f"coldstart ({tree.label}): {kind} event, {per[kind]['jobs']} Windmill jobs, "
                                 f"{per[kind]['python_jobs']} Python{sql}", "measured": f"{per[kind]['cpu_ms']} ms CPU",
                         "baseline_text": f"{base} ms", "ratio": ratio})
        figures[tree.label] = per
    return {"name": "coldstart", "figures": figures, "baseline": f"{base} ms CPU (python -c pass)",
            "ratio": figures["ships/direct"]["recorded"]["ratio"], "rows": rows}


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT)]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--compare", type=Path, help="another checkout of the bundle, run in the same rounds")
    parser.add_argument("--rounds", type=int, help="rounds counted (default 21, 3 with --quick)")
    a = parser.parse_args()
    print(json.dumps(run(a.quick, a.compare, a.rounds), indent=2))
