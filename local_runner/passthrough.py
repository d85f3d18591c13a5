"""Input transforms whose value Windmill passes through without JavaScript.

Windmill evaluates an input transform in JavaScript (numbers become doubles: an integer
beyond 2^53 loses digits) except where its worker passes the stored JSON through as is
(backend/windmill-worker/src/js_eval.rs@00553bb, eval_timeout):
- the expression is exactly a name of the transform context (`previous_result`);
- `flow_input.<key>` or `flow_input["<key>"]`, a top-level key that exists
  (try_exact_property_access);
- `results.<id>`, `results?.<id>`, optionally `[n]` then `.a.b...` (RE_FULL), read by
  the API from the stored result (handle_full_regex): exact.
Here the same shapes return the Python value itself (exact integers, no serialisation);
any other expression, or a path that does not resolve, goes to JavaScript as before,
with only the scope names it mentions serialised (as eval_timeout keeps only the
context keys the expression contains).
"""
from __future__ import annotations

import re
from typing import Any

from . import js

MISSING = object()

_FLOW_INPUT = re.compile(r'^flow_input(?:\.(?P<dot>.+)|\["(?P<br>.+)"\])$')
_RESULTS = re.compile(r"^results\??\.([a-zA-Z_0-9]+)(?:\[(\d+)\])?((?:\.[a-zA-Z_0-9]+)+)?$")


def lookup(expr: str, scope: dict[str, Any]) -> Any:
    """The value Windmill passes through for `expr`, or MISSING (evaluate it in JS)."""
    expr = expr.strip()
    if expr == "previous_result" and expr in scope:
        return scope[expr]
    m = _FLOW_INPUT.match(expr)
    if m:
        flow_input = scope.get("flow_input")
        key = m["dot"] if m["dot"] is not None else m["br"]
        if isinstance(flow_input, dict) and key in flow_input:
            return flow_input[key]
        return MISSING
    m = _RESULTS.match(expr)
    if m:
        results = scope.get("results")
        if not isinstance(results, dict) or m[1] not in results:
            return MISSING
        value = results[m[1]]
        path = ([int(m[2])] if m[2] is not None else []) + (m[3] or "").split(".")[1:]
        for step in path:
            if isinstance(step, int) and isinstance(value, list) and step < len(value):
                value = value[step]
            elif isinstance(step, str) and isinstance(value, dict) and step in value:
                value = value[step]
            else:
                return MISSING  # let JavaScript say what a missing path gives
        return value
    return MISSING


def evaluate(expr: str, scope: dict[str, Any]) -> Any:
    """`expr`'s value: passed through where Windmill does, else evaluated in JavaScript
    with only the scope the expression reads serialised (`narrow`)."""
    value = lookup(expr, scope)
    if value is not MISSING:
        return value
    return js.evaluate(expr, narrow(expr, scope))


_OBJECT_PROTOTYPE = {"constructor", "__proto__", "hasOwnProperty", "isPrototypeOf", "propertyIsEnumerable",
                     "toLocaleString", "toString", "valueOf", "__defineGetter__", "__defineSetter__",
                     "__lookupGetter__", "__lookupSetter__"}
_NAME = re.compile(r"\b(flow_input|results)\b(\??\.([A-Za-z_$][\w$]*))?")


def narrow(expr: str, scope: dict[str, Any]) -> dict[str, Any]:
    """The names `expr` mentions; of `flow_input` and `results`, only the keys it reads
    as `.key` / `?.key` when that is the only way it uses them (a delivery's event is
    not serialised for `flow_input.hubspot ?? null`). Any other use keeps the whole."""
    out = {k: v for k, v in scope.items() if k in expr}
    keys: dict[str, set | None] = {}
    for m in _NAME.finditer(expr):
        name, key = m[1], m[3]
        called = expr[m.end():].lstrip().startswith("(")  # flow_input.hasOwnProperty(...)
        if key is None or called or key in _OBJECT_PROTOTYPE or keys.get(name, set()) is None:
            keys[name] = None  # used as a whole (indexing, spreading, passing it on)
        else:
            keys.setdefault(name, set()).add(key)
    for name, used in keys.items():
        if used is not None and isinstance(out.get(name), dict):
            out[name] = {k: v for k, v in out[name].items() if k in used}
    return out
