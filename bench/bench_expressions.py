"""Input-transform expressions per delivery: local_runner.js (compiled functions kept in a
pool across threads, only the names an expression uses serialised) against the runner's
previous evaluator (a QuickJS context and its compiled functions per thread, the whole
scope serialised for every expression), in the same run, interleaved rounds: each figure
the median over the rounds, the ratio the median of the per-round ratios.

Each delivery runs on a fresh thread, as `make serve` gives each request one; its steps'
expressions see the results of the steps before them (a normalised event of a few KB).
"""
from __future__ import annotations

import json
import statistics
import threading
import time

import quickjs

from local_runner import deep, js

_OLD_SCOPE = ("flow_input", "results", "previous_result", "result", "error", "params", "all_iters")


class OldEvaluator:
    """The evaluator local_runner/js.py replaced (one context per thread)."""

    def __init__(self):
        self.local = threading.local()

    def evaluate(self, expr: str, scope: dict):
        if not hasattr(self.local, "ctx"):
            self.local.ctx, self.local.fns = quickjs.Context(), {}
        fn = self.local.fns.get(expr)
        if fn is None:
            src = (f"(function(__scope) {{ const {{{', '.join(_OLD_SCOPE)}}} = JSON.parse(__scope);\n"
                   f"const __v = ({expr}\n);\nreturn __v === undefined ? 'null' : JSON.stringify(__v); }})")
            fn = self.local.fns[expr] = self.local.ctx.eval(src)
        return deep.loads(fn(deep.dumps(scope)))


EXPRESSIONS = ["flow_input.event", "flow_input.webhook_id", "results.normalize.kind",
               "results.record.status === 'duplicate'", "previous_result.customer_id", "flow_input.delivery_attempt ?? 1"]


def _delivery_scope(i: int) -> tuple[dict, dict]:
    event = {"type": "payment.succeeded", "business_id": "bus_1", "timestamp": "2026-01-01T00:00:00Z",
             "data": {"payment_id": f"pay_{i}", "total_amount": 1000, "currency": "JPY",
                      "customer": {"customer_id": "cus_1", "email": "a@example.com", "name": "A"},
                      "metadata": {f"k{j}": "v" * 40 for j in range(40)}}}
    normalized = {"kind": "payment", "customer_id": "cus_1", "event": event}
    flow_input = {"event": event, "webhook_id": f"wh_{i}", "delivery_attempt": 1}
    results = {"normalize": normalized, "record": {"status": "new", "event": event}}
    return flow_input, results


def _new(i: int):
    flow_input, results = _delivery_scope(i)
    for expr in EXPRESSIONS:
        js.evaluate(expr, {"results": results, "previous_result": results["record"], "params": {}},
                    flow_input=flow_input)


def _old(evaluator: OldEvaluator, i: int):
    flow_input, results = _delivery_scope(i)
    for expr in EXPRESSIONS:
        evaluator.evaluate(expr, {"flow_input": flow_input, "results": results,
                                  "previous_result": results["record"], "params": {}})


def _per_delivery_us(fn, deliveries: int) -> float:
    start = time.perf_counter_ns()
    for i in range(deliveries):
        t = threading.Thread(target=fn, args=(i,))
        t.start()
        t.join()
    return (time.perf_counter_ns() - start) / deliveries / 1000


def run(quick: bool) -> dict:
    deliveries = 30 if quick else 200
    rounds = 3 if quick else 7
    old = OldEvaluator()
    _new(0), _old(old, 0)  # warm imports
    olds, news = [], []
    for _ in range(rounds):  # interleaved: neighbours disturb both alike
        olds.append(_per_delivery_us(lambda i: _old(old, i), deliveries))
        news.append(_per_delivery_us(_new, deliveries))
    old_us, new_us = statistics.median(olds), statistics.median(news)
    ratio = round(statistics.median(n / o for n, o in zip(news, olds)), 2)
    return {
        "name": "expressions per delivery",
        "figures": {"deliveries_per_round": deliveries, "rounds": rounds, "expressions": len(EXPRESSIONS),
                    "scope_json_bytes": len(json.dumps(_delivery_scope(0)[1]))},
        "baseline": round(old_us, 1), "ratio": ratio,
        "rows": [
            {"name": "expressions, previous evaluator (context per thread, whole scope; baseline)",
             "measured": f"{round(old_us, 1)} µs/delivery"},
            {"name": "expressions, local_runner.js (pooled, used names only)",
             "measured": f"{round(new_us, 1)} µs/delivery", "baseline_text": f"{round(old_us, 1)} µs",
             "ratio": ratio},
        ],
    }
