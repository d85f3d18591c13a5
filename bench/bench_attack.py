"""The attack report: every case of tests/attack_cases.py, counted by outcome.

Each case goes to the webhook URL and to the HTTP route of the local server (`make
serve`'s App, in-process, real flows, real Postgres): rejected with a 4xx before any
job, rejected by the preprocessor, or stored inertly. `unexpected` counts cases that
ended otherwise, changed another delivery's rows (or any row, when rejected), stopped
the server from serving a normal delivery afterwards, or stored a text other than the
one sent; `secret_leaks` counts secret strings found in any response, job result, log,
row or outbox entry. Both must be 0. The "baseline" is the expected outcome of each
case; the ratio is the share of deliveries handled as expected.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(quick: bool) -> dict:
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    import attack_cases as ac  # noqa: PLC0415
    from local_runner.pg_server import start_server  # noqa: PLC0415

    cases = [c for c in ac.CASES if not quick or "inject_" not in c.name or c.name.endswith("_payment")]
    pg = start_server()
    try:
        ac.start_pg_schema(pg.url)
        got = ac.run_all(pg.url, str(Path(tempfile.mkdtemp(prefix="bench_attack_")) / "outbox.jsonl"), cases)
    finally:
        pg.stop()
    expected = {k: sum(len(c.targets) for c in cases if c.expect == k) for k in ac.OUTCOMES}
    handled = got["deliveries"] - got["unexpected"]
    ratio = round(handled / got["deliveries"], 3)
    rows = [{"name": f"attack: {k.replace('_', ' ')}", "measured": f"{got[k]} deliveries",
             "baseline_text": f"{expected[k]} expected", "ratio": round(got[k] / expected[k], 3) if expected[k] else ""}
            for k in ac.OUTCOMES]
    rows.append({"name": "attack: handled as expected (no crash, no wrong state, no leak)",
                 "measured": f"{handled}/{got['deliveries']} ({got['cases']} cases x webhook URL / HTTP route), "
                             f"{got['secret_leaks']} secret leaks", "baseline_text": "all", "ratio": ratio})
    return {"name": "attack", "figures": {**got, "expected": expected}, "baseline": "every case as expected",
            "ratio": ratio, "rows": rows}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
