"""Delivery text that a Windmill worker will not resolve: attacker text stays text.

Before a job starts, a Windmill worker resolves the strings in its arguments, nested
objects included (windmill-worker common.rs `transform_json`): `$var:<path>` becomes
the variable's value, `$res:<path>` the resource, likewise `$jsonvar:` and
`$encrypted:`, a reserved name such as `$WM_TOKEN` the job's token, and an object
`{"$interpolate": [...]}` a string built from variables. Each step of the entry flow
takes the delivery as an argument, so a customer who names themselves
`$var:f/dodo/webhook_secret` at checkout would have that secret written into Postgres,
HubSpot and Slack.

`defuse` puts an invisible WORD JOINER (U+2060) before the leading `$` of every string
and key: the text reads the same and resolves to nothing. Strings not starting with `$`
are untouched.
"""

from __future__ import annotations

from typing import Any

JOINER = "\u2060"


def defuse(value: Any) -> Any:
    """`value` with every string and key that starts with `$` prefixed by JOINER.

    Iterative, so any depth is handled: a recursive walk exhausted Python's stack a few
    hundred levels deep inside a worker.
    """
    if not isinstance(value, (dict, list)):
        return _text(value)
    root = _empty(value)
    stack = [(value, root)]
    while stack:
        source, copy = stack.pop()
        if isinstance(source, dict):
            for key, item in source.items():
                copy[_text(key)] = _item(item, stack)
        else:
            for index, item in enumerate(source):
                copy[index] = _item(item, stack)
    return root


def _item(item: Any, stack: list) -> Any:
    """The defused `item`; a container comes back empty and is filled from the stack."""
    if isinstance(item, str):
        return JOINER + item if item.startswith("$") else item
    if isinstance(item, (dict, list)):
        child = _empty(item)
        stack.append((item, child))
        return child
    return item


def _empty(container: dict | list) -> dict | list:
    return {} if isinstance(container, dict) else [None] * len(container)


def _text(value: Any) -> Any:
    return JOINER + value if isinstance(value, str) and value.startswith("$") else value
