"""`make serve` as a server process: deliveries/s and resident memory, against today's.

Two trees run the same `python -m local_runner serve` in child processes, each on its
own Postgres: the working tree, and the baseline commit (BASELINE, extracted with `git
archive`), so "today" is measured in the same run. Throughput: interleaved rounds, each
tree in turn gets N signed deliveries from C keep-alive clients on the entry flow's
webhook URL (async, 201 + job id, as Dodo sends them) and the clock stops when every
job reads completed (GET jobs_u/completed/get_result_maybe). Memory: the server's RSS
(psutil) after a warm-up and then every STEP deliveries up to M, for growth per 1,000.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import psutil
from standardwebhooks import Webhook

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "3b2a138"  # main at the start of the day (issue 11 item 5, issue 12 item 5)
HEADERS = "webhook-id,webhook-timestamp,webhook-signature"
TYPES = ("payment.succeeded", "subscription.renewed", "refund.succeeded", "dispute.opened")


def _bodies() -> list[str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from fixture_data import load_delivery  # noqa: PLC0415
    return [load_delivery(t)["body"] for t in TYPES]


def _baseline_tree() -> Path | None:
    """The BASELINE commit's files in a temporary folder (None outside a git clone)."""
    dest = Path(tempfile.mkdtemp(prefix="bench-serve-base-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BASELINE], capture_output=True, check=False)
    if archive.returncode != 0:
        return None
    with tarfile.open(fileobj=__import__("io").BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    (dest / "node_modules").symlink_to(ROOT / "node_modules")
    return dest


def _baseline_packages(tree: Path) -> Path | None:
    """The packages the baseline's requirements.lock pins and this environment lacks or pins
    otherwise (psycopg 3 before the psycopg2 switch), installed once into var/ and put first on
    the baseline server's PYTHONPATH: each tree runs on its own dependencies."""
    from importlib import metadata  # noqa: PLC0415
    wanted = []
    for line in (tree / "requirements.lock").read_text().splitlines():
        name, _, version = line.split("#")[0].strip().partition("==")
        if not version:
            continue
        try:
            if metadata.version(name) == version:
                continue
        except metadata.PackageNotFoundError:
            pass
        wanted.append(f"{name}=={version}")
    if not wanted:
        return None
    site = ROOT / "var" / f"bench-baseline-{BASELINE}"
    marker = site / ".installed"
    if not (marker.exists() and marker.read_text() == "\n".join(wanted)):
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                               *wanted], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"the baseline {BASELINE} runs on {', '.join(wanted)}; pip could not install them "
                               f"into {site}: {done.stderr.strip()[-300:]}")
        marker.write_text("\n".join(wanted))
    return site


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `python -m local_runner serve` child of `tree`."""

    def __init__(self, tree: Path, name: str, db_url: str, secret: str, outbox: Path, packages: Path | None = None):
        self.name, self.port = name, _free_port()
        env = {**os.environ, "PORT": str(self.port), "DATABASE_URL": db_url,
               "DODO_WEBHOOK_SECRET": secret, "DODO_OUTBOX": str(outbox), "QUEUE_SIZE": "100000",
               "PYTHONPATH": os.pathsep.join(str(p) for p in (tree, packages) if p)}
        env.pop("WM_TOKEN", None)
        env.pop("DODO_SCHEMA", None)  # older checkouts read it; both must migrate the schema the flows use
        self.proc = subprocess.Popen([sys.executable, "-m", "local_runner", "serve"], cwd=tree, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in self.proc.stdout:  # wait for "serving Windmill endpoints ..."
            if line.startswith("serving"):
                break
        else:
            raise RuntimeError(f"{name} server did not start")
        self.log: list[str] = []  # drained, or a chatty server would block on a full pipe
        threading.Thread(target=lambda: self.log.extend(self.proc.stdout), daemon=True).start()
        self.ps = psutil.Process(self.proc.pid)

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def _signed(body: str, secret: str, msg_id: str) -> dict:
    ts = datetime.now(timezone.utc)
    return {"content-type": "application/json", "webhook-id": msg_id,
            "webhook-timestamp": str(int(ts.timestamp())), "webhook-signature": Webhook(secret).sign(msg_id, ts, body)}


def deliver(server: Server, secret: str, bodies: list[str], n: int, tag: str, clients: int) -> float:
    """Seconds for `n` signed deliveries to be accepted and completed."""
    ws = "demo"
    hook = f"/api/w/{ws}/jobs/run/f/f/dodo/webhook?raw=true&include_header={HEADERS}"
    requests = [(bodies[i % len(bodies)], f"msg_{tag}_{i}") for i in range(n)]
    signed = [(body.encode(), _signed(body, secret, mid)) for body, mid in requests]

    def client(chunk):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        ids = []
        for body, headers in chunk:
            conn.request("POST", hook, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 201:
                raise RuntimeError(f"{server.name}: HTTP {resp.status} {data[:200]!r}")
            ids.append(data.decode())
        for job_id in ids:  # then wait for each job to complete (rare polls: they cost the server CPU)
            while True:
                conn.request("GET", f"/api/w/{ws}/jobs_u/completed/get_result_maybe/{job_id}")
                resp = conn.getresponse()
                done = json.loads(resp.read())
                if done["completed"]:
                    if not done["success"]:
                        raise RuntimeError(f"{server.name}: job {job_id} failed: {done['result']}")
                    break
                time.sleep(0.2)
        conn.close()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as ex:
        list(ex.map(client, [signed[i::clients] for i in range(clients)]))
    return time.perf_counter() - t0


def run(quick: bool = True, rounds: int | None = None, n: int | None = None, measure_memory: bool = True) -> dict:
    sys.path.insert(0, str(ROOT))
    from local_runner.pg_server import start_server  # noqa: PLC0415

    n = n or (150 if quick else 600)
    rounds, clients = rounds or (3 if quick else 5), 8
    memory_n = {"now": 2_000 if quick else 20_000, "today": 1_000 if quick else 4_000} if measure_memory else {}
    step = 500 if quick else 2_000
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    bodies, run_id = _bodies(), f"{time.time_ns():x}"
    outdir = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    base = _baseline_tree()
    trees = {"now": (ROOT, None)} | ({"today": (base, _baseline_packages(base))} if base else {})
    pgs, servers = [], {}
    try:
        for name, (tree, packages) in trees.items():  # a Postgres each: the flows' steps use schema "dodo"
            pgs.append(start_server())
            servers[name] = Server(tree, name, pgs[-1].url, secret, outdir / f"{name}.jsonl", packages)
            deliver(servers[name], secret, bodies, 40, f"{run_id}_{name}_warm", clients)
        seconds: dict[str, list[float]] = {name: [] for name in servers}
        for r in range(rounds):  # interleaved: each round runs every tree once, in alternating order
            for name in (list(servers) if r % 2 == 0 else list(servers)[::-1]):
                seconds[name].append(deliver(servers[name], secret, bodies, n, f"{run_id}_{name}_r{r}", clients))
        rates = {name: round(n / statistics.median(s), 1) for name, s in seconds.items()}
        memory: dict[str, list[tuple[int, float]]] = {}
        for name, server in servers.items():
            if name not in memory_n:
                continue
            samples = [(0, round(server.rss_mb(), 1))]
            for done in range(step, memory_n[name] + 1, step):
                deliver(server, secret, bodies, step, f"{run_id}_{name}_m{done}", clients)
                samples.append((done, round(server.rss_mb(), 1)))
            memory[name] = samples
    finally:
        for server in servers.values():
            server.stop()
        for pg in pgs:
            pg.stop()
        shutil.rmtree(outdir, ignore_errors=True)
        if base:
            shutil.rmtree(base, ignore_errors=True)

    def growth(samples):  # MB per 1,000 deliveries over the second half (past any warm-up)
        half = samples[len(samples) // 2:]
        (d0, m0), (d1, m1) = half[0], half[-1]
        return round((m1 - m0) / max(d1 - d0, 1) * 1000, 2)
    # the ratio: median of the per-round ratios (both trees ran back to back under the same load)
    round_ratios = [round(t / w, 2) for w, t in zip(seconds.get("now", []), seconds.get("today", []))]
    ratio = round(statistics.median(round_ratios), 2) if round_ratios else None
    figures = {"deliveries_per_round": n, "rounds": rounds, "clients": clients,
               "deliveries_per_s": rates, "round_seconds": seconds, "round_ratios": round_ratios,
               "rss_mb_samples": memory,
               "rss_growth_mb_per_1000": {k: growth(v) for k, v in memory.items()}}
    rows = [{"name": f"`make serve` deliveries/s ({clients} clients, {rounds} interleaved rounds of {n}: median rate, "
                     "median of the per-round ratios)",
             "measured": f"{rates['now']} /s",
             "baseline_text": f"day start ({BASELINE}): {rates.get('today', 'n/a')} /s", "ratio": ratio}]
    for name, samples in memory.items():
        rows.append({"name": f"`make serve` RSS over {samples[-1][0]:,} deliveries "
                                f"({'day start' if name == 'today' else name}; growth over the second half)",
                     "measured": f"{samples[0][1]} -> {samples[-1][1]} MB "
                                 f"({figures['rss_growth_mb_per_1000'][name]} MB per 1,000)"})
    return {"name": Path(__file__).stem, "figures": figures,
            "baseline": f"day start ({BASELINE}): {rates.get('today')} deliveries/s", "ratio": ratio, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="make bench's sizes: 5 rounds of 600, memory to 20,000")
    parser.add_argument("--rounds", type=int, help="interleaved throughput rounds (default 3, --full 5)")
    parser.add_argument("--deliveries", type=int, help="deliveries per tree per round (default 150, --full 600)")
    parser.add_argument("--no-memory", action="store_true", help="throughput only")
    args = parser.parse_args()
    print(json.dumps(run(quick=not args.full, rounds=args.rounds, n=args.deliveries, measure_memory=not args.no_memory),
                     indent=2))


if __name__ == "__main__":
    main()
