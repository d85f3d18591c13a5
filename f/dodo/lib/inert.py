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
    """`value` with every string and key that starts with `$` prefixed by JOINER."""
    if isinstance(value, str):
        return JOINER + value if value.startswith("$") else value
    if isinstance(value, dict):
        return {defuse(k): defuse(v) for k, v in value.items()}
    if isinstance(value, list):
        return [defuse(v) for v in value]
    return value
