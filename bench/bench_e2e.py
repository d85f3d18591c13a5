"""End-to-end deliveries/s through the local server (`make serve`), loopback.

The server as `make serve` runs it (local_runner.server.App, its Postgres connection pool,
4 workers), in this process.

Concurrent clients POST signed deliveries to the entry flow's webhook URL exactly as Dodo
does (async: 201 + job id); the clock stops when every job has completed (verified,
normalised, recorded in Postgres, CRM and notifications to the outbox). Baselines in the
same run, same server: bare HTTP round trips (a job lookup) and forged deliveries (the
flow stops at its preprocessor). Interleaved rounds: each round times the three kinds one
after the other (the order alternating); each rate is the median over the rounds and each
ratio the median of the per-round ratios. Also reports the Windmill jobs one event costs.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from standardwebhooks import Webhook

ROOT = Path(__file__).resolve().parent.parent
HEADERS = "webhook-id,webhook-timestamp,webhook-signature"
BARE_PER_DELIVERY = 10  # a round of n deliveries times 10n round trips: long enough to time
TYPES = ("payment.succeeded", "subscription.renewed", "refund.succeeded", "dispute.opened")


def _bodies() -> list[str]:
    import sys  # noqa: PLC0415
    sys.path.insert(0, str(ROOT / "tests"))
    from fixture_data import load_delivery  # noqa: PLC0415
    return [load_delivery(t)["body"] for t in TYPES]


def _signed(body: str, secret: str, msg_id: str) -> dict:
    ts = datetime.now(timezone.utc)
    return {"content-type": "application/json", "webhook-id": msg_id,
            "webhook-timestamp": str(int(ts.timestamp())), "webhook-signature": Webhook(secret).sign(msg_id, ts, body)}


def _clients(port: int, n_clients: int, requests: list[tuple[str, str, bytes, dict]]) -> float:
    """Send `requests` over `n_clients` keep-alive connections; returns the seconds taken."""
    chunks = [requests[i::n_clients] for i in range(n_clients)]

    def client(chunk):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for method, url, body, headers in chunk:
            conn.request(method, url, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status >= 500:
                raise RuntimeError(f"HTTP {resp.status}")
        conn.close()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(n_clients) as ex:
        list(ex.map(client, chunks))
    return time.perf_counter() - t0


def run(quick: bool = True) -> dict:
    from local_runner import pgpool  # noqa: PLC0415
    from local_runner.demo import bundle_config, quiet_wmill_client  # noqa: PLC0415
    from local_runner.pg_server import start_server  # noqa: PLC0415
    from local_runner.runner import Runner  # noqa: PLC0415
    from local_runner.server import App, apply_migrations, make_server  # noqa: PLC0415

    n, n_clients, rounds = (120, 4, 3) if quick else (300, 8, 5)
    quiet_wmill_client()
    os.environ["DODO_OUTBOX"] = os.path.join(tempfile.mkdtemp(prefix="dodo-bench-"), "outbox.jsonl")
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    forged_secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    pg = None if os.environ.get("DATABASE_URL") else start_server()
    url = os.environ.get("DATABASE_URL") or pg.url
    pgpool.install()  # as local_runner.server.serve does
    try:
        config = bundle_config(url, secret)
        apply_migrations(config)
        app = App(Runner(ROOT, config), workers=4, queue_size=n * 2, keep_results=n * (3 * rounds + 1))
        server = make_server(app, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port, ws = server.server_address[1], app.workspace
        hook = f"/api/w/{ws}/jobs/run/f/f/dodo/webhook?raw=true&include_header={HEADERS}"
        bodies, run_id = _bodies(), f"{time.time_ns():x}"

        def deliveries(key: str, sign_with: str) -> list:
            out = []
            for i in range(n):
                body = bodies[i % len(bodies)]
                out.append(("POST", hook, body.encode(), _signed(body, sign_with, f"msg_bench_{run_id}_{key}_{i}")))
            return out

        def elapsed(requests) -> float:
            t0 = time.perf_counter()
            _clients(port, n_clients, requests)
            app.queue.join()  # every async job has completed
            return time.perf_counter() - t0

        warm = deliveries("warm", secret)[: max(8, n // 10)]
        elapsed(warm)  # imports, prepared statements
        kinds = {"bare": lambda r: [("GET", f"/api/w/{ws}/jobs_u/get/none", None, {})] * (n * BARE_PER_DELIVERY),
                 "forged": lambda r: deliveries(f"forged{r}", forged_secret),
                 "real": lambda r: deliveries(f"real{r}", secret)}
        seconds: dict[str, list[float]] = {k: [] for k in kinds}
        for r in range(rounds):  # interleaved: neighbours on the machine disturb every kind alike
            for kind in (list(kinds) if r % 2 == 0 else list(kinds)[::-1]):
                seconds[kind].append(elapsed(kinds[kind](r)))
        with app.lock:
            done = [r for r in app.jobs.values() if r.get("status") == "completed"]
        real = [r for r in done if r.get("success") and not r.get("is_skipped")]
        jobs_per_event = max(len(r["local_jobs"]) for r in real) if real else None
        rejected = [r for r in done if not r.get("success")]
        jobs_per_forged = max(len(r["local_jobs"]) for r in rejected) if rejected else None
        failed = sum(1 for r in done if not r.get("success"))
        server.shutdown()
        server.server_close()
    finally:
        pgpool.uninstall()  # the benchmarks after this one use plain connections
        if pg:
            pg.stop()
    count = {"bare": n * BARE_PER_DELIVERY, "forged": n, "real": n}
    rate = {k: round(count[k] / statistics.median(v), 1) for k, v in seconds.items()}
    ratio_to_bare = {k: round(statistics.median((n / x) / (count["bare"] / b) for b, x in zip(seconds["bare"], v)), 4)
                     for k, v in seconds.items() if k != "bare"}
    figures = {"deliveries_per_round": n, "rounds": rounds, "clients": n_clients, "workers": 4,
               "deliveries_per_s": rate["real"], "forged_rejected_per_s": rate["forged"],
               "bare_http_round_trips_per_s": rate["bare"], "round_seconds": seconds,
               "jobs_per_event_hot_path": jobs_per_event, "jobs_per_forged_delivery": jobs_per_forged,
               "failed_jobs": failed - n * rounds}  # the forged deliveries fail by design: expect 0
    ratio = ratio_to_bare["real"]
    rows = [
        {"name": f"bare HTTP round trips (baseline; median of {rounds} interleaved rounds)",
         "measured": f"{rate['bare']} req/s"},
        {"name": f"forged deliveries (rejected by the preprocessor; {jobs_per_forged} jobs/delivery)",
         "measured": f"{rate['forged']} /s", "baseline_text": f"{rate['bare']} req/s", "ratio": ratio_to_bare["forged"]},
        {"name": f"signed deliveries end to end ({jobs_per_event} jobs/event, Postgres, outbox)",
         "measured": f"{rate['real']} /s", "baseline_text": f"{rate['bare']} req/s", "ratio": ratio},
    ]
    return {"name": Path(__file__).stem, "figures": figures,
            "baseline": f"{rate['bare']} bare HTTP round trips/s", "ratio": ratio, "rows": rows}


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
