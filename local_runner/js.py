"""JavaScript expressions in QuickJS, evaluated as Windmill's windmill-jseval does.

Copied from backend/windmill-jseval/src/lib.rs@b32d791a (eval_timeout_quickjs,
eval_quickjs_inner, should_add_return_quickjs, contains_semicolon_outside_strings,
try_exact_property_access) and the worker's callers (worker_flow.rs@8f7d467e
transform_input, compute_bool_from_expr, evaluate_input_transform):

- `flow_input.NAME` / `flow_input["NAME"]` / `flow_env.NAME` naming an existing key is
  read without JavaScript (the value passes through exactly, large integers included);
- otherwise only the context names the expression's text contains are put in scope
  (`previous_result` too when it mentions `error`), and `flow_input` / `flow_env` when
  it mentions them;
- an expression mentioning `error` with `previous_result` in scope sees `error` derived
  from it: `previous_result.error`, or for an array of sub-job results the single
  failure's `.error` or a `MultipleErrors` object (see `ERROR_SETUP`);
- the expression runs as `(async function(){ return EXPR; })()`, or without `return`
  when it starts with a statement keyword or holds a `;` outside strings, and the
  promise is awaited; `undefined` becomes `null`.

Compiled functions are kept across calls (and deliveries) in a small pool of QuickJS
contexts, each used by one thread at a time.
"""
from __future__ import annotations

import queue
import re
from typing import Any

import quickjs

from . import deep

MEMORY_LIMIT = 32 * 1024 * 1024  # windmill-jseval QUICKJS_MEMORY_LIMIT
MAX_COMPILED = 4096  # per context; a flow set has far fewer distinct expressions


class ExpressionError(Exception):
    pass


_STATEMENT_PREFIXES = ("const ", "let ", "var ", "if ", "if(", "for ", "for(", "while ", "while(",
                       "switch ", "switch(", "try ", "try{", "throw ", "function ", "class ",
                       "async ", "await ")


def contains_semicolon_outside_strings(expr: str) -> bool:
    """windmill-jseval contains_semicolon_outside_strings."""
    single = double = template = False
    prev = "\0"
    for ch in expr:
        if ch == "'" and prev != "\\" and not double and not template:
            single = not single
        elif ch == '"' and prev != "\\" and not single and not template:
            double = not double
        elif ch == "`" and prev != "\\" and not single and not double:
            template = not template
        elif ch == ";" and not (single or double or template):
            return True
        prev = ch
    return False


def should_add_return(expr: str) -> bool:
    """windmill-jseval should_add_return_quickjs."""
    trimmed = expr.strip()
    if not trimmed:
        return True
    if trimmed.startswith(("return ", "return;")) or trimmed == "return":
        return False
    if trimmed.startswith(_STATEMENT_PREFIXES):
        return False
    return not contains_semicolon_outside_strings(trimmed)


_MISSING = object()


def try_exact_property_access(expr: str, flow_input: Any = None, flow_env: Any = None) -> list:
    """windmill-jseval try_exact_property_access, as [found, value]."""
    value = exact_property(expr, flow_input, flow_env)
    return [False, None] if value is _MISSING else [True, value]


def exact_property(expr: str, flow_input: Any, flow_env: Any) -> Any:
    """windmill-jseval try_exact_property_access: the value of `flow_input.KEY`,
    `flow_input["KEY"]` or `flow_env.KEY` when the key exists, else `_MISSING`."""
    for prefix, obj in (("flow_input", flow_input), ("flow_env", flow_env)):
        if not expr.startswith(prefix):
            continue
        suffix = expr[len(prefix):]
        key = None
        if suffix.startswith("."):
            key = suffix[1:]
        elif suffix.startswith('["') and suffix.endswith('"]') and len(suffix) > 4:
            key = suffix[2:-2]
        if key is not None and isinstance(obj, dict) and key in obj:
            return obj[key]
        return _MISSING
    return _MISSING


# windmill-jseval eval_quickjs_inner, "Set up error extraction if needed"
ERROR_SETUP = """
let error = previous_result?.error;
if (!error) {
    if (Array.isArray(previous_result)) {
        const errors = previous_result.filter(item => item && typeof item === 'object' && 'error' in item);
        if (errors.length === 1) {
            error = errors[0].error;
        } else if (errors.length > 1) {
            error = {
                name: 'MultipleErrors',
                message: errors.map(({ error: e }, i) => `[${e.step_id || i}] ${e.message || e.name}`).join('; '),
                errors: previous_result
            };
        } else {
            error = { name: 'MultipleErrors', message: "Could not parse errors", errors: previous_result };
        }
    } else {
        if (previous_result) {
            error = { name: 'UnknownError', message: 'Could not parse the error', error: previous_result };
        } else {
            error = { name: 'UnknownError', message: 'No error found' };
        }
    }
}
"""


def _body(expr: str) -> str:
    if should_add_return(expr):
        return f"return {expr};"
    return expr


class _Slot:
    """One QuickJS context and the functions compiled in it."""

    def __init__(self):
        self.ctx = quickjs.Context()
        self.ctx.set_memory_limit(MEMORY_LIMIT)
        self.fns: dict[tuple, Any] = {}

    def function(self, expr: str, names: tuple, with_error: bool):
        key = (expr, names, with_error)
        fn = self.fns.get(key)
        if fn is None:
            if len(self.fns) >= MAX_COMPILED:
                self.fns.clear()
            decl = f"const {{{', '.join(names)}}} = JSON.parse(__scope);" if names else ""
            src = (
                "(function(__scope) {\n"
                f"{decl}\n{ERROR_SETUP if with_error else ''}\n"
                "globalThis.__wm_out = undefined;\n"
                f"(async function() {{ {_body(expr)}\n}})().then(\n"
                "  (x) => { globalThis.__wm_out = '1' + (JSON.stringify(x ?? null) ?? 'null'); },\n"
                "  (e) => { globalThis.__wm_out = '0' + String(e); });\n"
                "})"
            )
            try:
                fn = self.ctx.eval(src)
            except quickjs.JSException as e:
                raise ExpressionError(f"QuickJS evaluation error: {e}") from None
            self.fns[key] = fn
        return fn


_pool: queue.SimpleQueue = queue.SimpleQueue()


def _run(expr: str, names: tuple, values: dict, with_error: bool) -> Any:
    try:
        slot = _pool.get_nowait()
    except queue.Empty:
        slot = _Slot()
    try:
        fn = slot.function(expr, names, with_error)
        try:
            fn(deep.dumps(values))
            while slot.ctx.execute_pending_job():
                pass
            out = slot.ctx.get("__wm_out")
        except quickjs.JSException as e:
            raise ExpressionError(f"QuickJS evaluation error: {e}") from None
        if not isinstance(out, str):
            raise ExpressionError("QuickJS evaluation error: the expression's promise never settled")
    finally:
        _pool.put(slot)
    if out[0] != "1":
        raise ExpressionError(f"QuickJS evaluation error: {out[1:]}")
    return deep.loads(out[1:])


def evaluate(expr: str, context: dict[str, Any], *, flow_input: Any = None, flow_env: Any = None) -> Any:
    """The value of `expr` as windmill-jseval computes it. `context` holds the
    transform context (`previous_result`, `result`, `results`, `params`, ...), whose
    names are in scope only when the expression's text mentions them."""
    expr = expr.strip()
    context = dict(context)
    # flow_input / flow_env may come in the context too (passthrough.narrow gives them so)
    flow_input = context.pop("flow_input", None) if flow_input is None else flow_input
    flow_env = context.pop("flow_env", None) if flow_env is None else flow_env
    direct = exact_property(expr, flow_input, flow_env)
    if direct is not _MISSING:
        return direct
    keys = [k for k in context if k in expr]
    with_error = "error" in expr and "previous_result" in context
    if with_error and "previous_result" not in keys:
        keys.append("previous_result")
    if with_error and "error" in keys:
        keys.remove("error")  # derived from previous_result, as Windmill does
    values = {k: context[k] for k in keys}
    if "flow_input" in expr:
        values["flow_input"] = flow_input
    if "flow_env" in expr:
        values["flow_env"] = flow_env if flow_env is not None else {}
    names = tuple(sorted(values))
    bad = [n for n in names if not re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]*", n)]
    if bad:
        raise ExpressionError(f"context names must be identifiers: {bad}")
    return _run(expr, names, values, with_error)


def truthy(expr: str, context: dict[str, Any], **kw) -> bool:
    """worker_flow.rs compute_bool_from_expr: `Boolean(expr)`, which must be a boolean."""
    out = evaluate(f"Boolean({expr})", context, **kw)
    if not isinstance(out, bool):
        raise ExpressionError(f"Expected a boolean value, found: {deep.dumps(out)!r}")
    return out
