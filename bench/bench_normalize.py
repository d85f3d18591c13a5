"""Normalise (and verify) per event, against the dodopayments SDK's `webhooks.unwrap` on
the same signed deliveries: interleaved rounds (each round times the SDK, normalise and
verify+normalise over the same deliveries, one after the other), each ratio the median
of the per-round ratios."""

import json
import statistics
import time
from pathlib import Path

import dodopayments

from f.dodo.lib.normalizer import normalize_event
from tests.fixture_data import FIXTURE_SECRET, all_deliveries, resign

from f.dodo.lib.signature import verify_delivery


def _pass_us(fn, items) -> float:
    """One pass over `items`, in µs per item."""
    start = time.perf_counter_ns()
    for item in items:
        fn(item)
    return (time.perf_counter_ns() - start) / len(items) / 1000


def _median(values) -> float:
    return round(statistics.median(values), 3)


def run(quick: bool) -> dict:
    names = [n for n, _ in all_deliveries()]
    per_pass = 300 if quick else 2000
    # Fresh signatures so the SDK's own 5-minute tolerance accepts them.
    fresh = [resign(n) for n in names]
    items = [fresh[i % len(fresh)] for i in range(per_pass)]
    rounds = 3 if quick else 9
    client = dodopayments.DodoPayments(bearer_token="bench-only", webhook_key=FIXTURE_SECRET)

    def sdk_unwrap(d):
        return client.webhooks.unwrap(d["body"], headers=d["headers"])

    def ours_normalize(d):
        return normalize_event(json.loads(d["body"]), d["headers"]["webhook-id"])

    def ours_verify_normalize(d):
        event = verify_delivery(d["body"], d["headers"], [FIXTURE_SECRET])
        return normalize_event(event, d["headers"]["webhook-id"])

    fns = {"sdk": sdk_unwrap, "normalize": ours_normalize, "verify_normalize": ours_verify_normalize}
    for fn in fns.values():
        fn(items[0])  # warm up imports and caches
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):  # interleaved: each round times every function on the same items
        for name, fn in fns.items():
            times[name].append(_pass_us(fn, items))
    ratio = {k: _median(t / b for t, b in zip(times[k], times["sdk"])) for k in ("normalize", "verify_normalize")}
    us = {k: round(statistics.median(v), 2) for k, v in times.items()}
    figures = {"events_per_pass": per_pass, "event_types": len(names), "rounds": rounds,
               "sdk_unwrap_us": us["sdk"], "normalize_us": us["normalize"],
               "verify_normalize_us": us["verify_normalize"],
               "ratio_normalize": ratio["normalize"], "ratio_verify_normalize": ratio["verify_normalize"]}
    rows = [
        {"name": "SDK webhooks.unwrap (verify + parse, baseline)", "measured": f"{us['sdk']} µs/event"},
        {"name": "json.loads + normalize_event", "measured": f"{us['normalize']} µs/event",
         "baseline_text": f"{us['sdk']} µs", "ratio": ratio["normalize"]},
        {"name": "verify_delivery + normalize_event", "measured": f"{us['verify_normalize']} µs/event",
         "baseline_text": f"{us['sdk']} µs", "ratio": ratio["verify_normalize"]},
    ]
    return {"name": Path(__file__).stem, "figures": figures, "baseline": f"{us['sdk']} µs/event (SDK unwrap)",
            "ratio": ratio["verify_normalize"], "rows": rows}


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
