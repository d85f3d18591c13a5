"""Normalise (and verify) per event, against the dodopayments SDK's `webhooks.unwrap` on
the same signed deliveries, in the same run."""

import json
import time
from pathlib import Path

import dodopayments

from f.dodo.lib.normalizer import normalize_event
from tests.fixture_data import FIXTURE_SECRET, all_deliveries, resign

try:  # written by the signature module's engineer; optional here
    from f.dodo.lib.signature import verify_delivery
except ImportError:  # pragma: no cover
    verify_delivery = None


def _per_event_us(fn, items, repeats: int) -> float:
    """Best of `repeats` passes over `items`, in µs per item (best: least disturbed by neighbours)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for item in items:
            fn(item)
        best = min(best, (time.perf_counter_ns() - start) / len(items) / 1000)
    return round(best, 2)


def run(quick: bool) -> dict:
    names = [n for n, _ in all_deliveries()]
    per_pass = 500 if quick else 3000
    # Fresh signatures so the SDK's own 5-minute tolerance accepts them.
    fresh = [resign(n) for n in names]
    items = [fresh[i % len(fresh)] for i in range(per_pass)]
    repeats = 2 if quick else 5
    client = dodopayments.DodoPayments(bearer_token="bench-only", webhook_key=FIXTURE_SECRET)

    def sdk_unwrap(d):
        return client.webhooks.unwrap(d["body"], headers=d["headers"])

    def ours_normalize(d):
        return normalize_event(json.loads(d["body"]), d["headers"]["webhook-id"])

    def ours_verify_normalize(d):
        event = verify_delivery(d["body"], d["headers"], [FIXTURE_SECRET])
        return normalize_event(event, d["headers"]["webhook-id"])

    for fn in (sdk_unwrap, ours_normalize) + ((ours_verify_normalize,) if verify_delivery else ()):
        fn(items[0])  # warm up imports and caches
    baseline = _per_event_us(sdk_unwrap, items, repeats)
    normalize = _per_event_us(ours_normalize, items, repeats)
    figures = {"events_per_pass": per_pass, "event_types": len(names), "passes": repeats,
               "sdk_unwrap_us": baseline, "normalize_us": normalize}
    rows = [
        {"name": "SDK webhooks.unwrap (verify + parse, baseline)", "measured": f"{baseline} µs/event"},
        {"name": "json.loads + normalize_event", "measured": f"{normalize} µs/event",
         "baseline_text": f"{baseline} µs", "ratio": round(normalize / baseline, 2)},
    ]
    ratio = round(normalize / baseline, 2)
    if verify_delivery:
        both = _per_event_us(ours_verify_normalize, items, repeats)
        figures["verify_normalize_us"] = both
        ratio = round(both / baseline, 2)
        rows.append({"name": "verify_delivery + normalize_event", "measured": f"{both} µs/event",
                     "baseline_text": f"{baseline} µs", "ratio": ratio})
    return {"name": Path(__file__).stem, "figures": figures, "baseline": f"{baseline} µs/event (SDK unwrap)",
            "ratio": ratio, "rows": rows}


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
