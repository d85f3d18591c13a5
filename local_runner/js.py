"""JavaScript expressions in QuickJS, as Windmill evaluates input transforms.

One QuickJS context per thread (a context shared across threads aborts the
process); each distinct expression is compiled once per thread into a function
taking the JSON-encoded scope (encoded and decoded at any depth: local_runner.deep).
"""
from __future__ import annotations

import threading
from typing import Any

import quickjs

from . import deep

# Names an expression may use (Windmill's transform and predicate scope).
SCOPE = ("flow_input", "results", "previous_result", "result", "error", "params", "all_iters")

_local = threading.local()


class ExpressionError(Exception):
    pass


def _compiled(expr: str):
    if not hasattr(_local, "ctx"):
        _local.ctx = quickjs.Context()
        _local.fns = {}
    fn = _local.fns.get(expr)
    if fn is None:
        names = ", ".join(SCOPE)
        src = (
            f"(function(__scope) {{ const {{{names}}} = JSON.parse(__scope);\n"
            f"const __v = ({expr}\n);\n"
            "return __v === undefined ? 'null' : JSON.stringify(__v); })"
        )
        try:
            fn = _local.ctx.eval(src)
        except quickjs.JSException as e:
            raise ExpressionError(f"cannot compile expression `{expr}`: {e}") from None
        _local.fns[expr] = fn
    return fn


def evaluate(expr: str, scope: dict[str, Any]) -> Any:
    """Value of `expr` with the given names in scope (missing names are undefined)."""
    fn = _compiled(expr)
    try:
        out = fn(deep.dumps(scope))
    except quickjs.JSException as e:
        raise ExpressionError(f"Error during evaluation of expression `{expr}`: {e}") from None
    return deep.loads(out)


def truthy(expr: str, scope: dict[str, Any]) -> bool:
    """Windmill evaluates predicates as `Boolean(expr)`."""
    return bool(evaluate(f"Boolean({expr})", scope))
