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

import json
import re

JOINER = "\u2060"


def defuse(value: object) -> object:
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


def _item(item: object, stack: list) -> object:
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


def _text(value: object) -> object:
    return JOINER + value if isinstance(value, str) and value.startswith("$") else value


# -- text Postgres can hold ----------------------------------------------------------------
# Postgres text and jsonb hold neither U+0000 nor a lone UTF-16 surrogate (a JSON string
# may escape both: "\u0000", "\ud800x"), so one such character in a customer's name failed
# the whole event and then the failure module that records it. Each becomes U+FFFD (the
# replacement character); everything else, valid surrogate pairs included, is kept.
_UNSAFE = re.compile("[\x00\ud800-\udfff]")
# In JSON text (json.dumps escapes non-ASCII): "\u0000", a high surrogate escape followed by
# a low one (a valid pair, kept), or any other surrogate escape, each not itself escaped.
_UNSAFE_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)(\\ud[89ab][0-9a-f]{2}\\ud[c-f][0-9a-f]{2}|\\ud[89a-f][0-9a-f]{2}|\\u0000)")


def pg_text(value: object) -> object:
    """`value` with NUL and lone surrogates replaced, if it is a string."""
    return _UNSAFE.sub("\ufffd", value) if isinstance(value, str) and _UNSAFE.search(value) else value


def pg_json(value: object) -> str:
    """JSON text of `value` that Postgres accepts as jsonb (json.dumps, then NUL and lone
    surrogate escapes replaced): the `dumps` of every Jsonb the bundle writes."""
    text = json.dumps(value, default=str)
    return _UNSAFE_ESCAPE.sub(_safe_escape, text) if "\\u" in text else text


def _safe_escape(m: re.Match) -> str:
    return m.group(0) if len(m.group(2)) == 12 else m.group(1) + "\\ufffd"


# -- text HTML shows as text ---------------------------------------------------------------
def html_escape(text: str) -> str:
    """`html.escape(text)`: & < > " ' as entities, so customer text in an HTML e-mail or a
    HubSpot note stays text. Here because `import html` also loads its 2,000-entity
    unescape table (html.entities, ~2 ms in every crm and notify job); the steps only escape."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#x27;"))
