"""JSON values of any depth, without recursion.

A delivery may nest a thousand levels (the server's parser accepts what fits its stack).
The runner copies, resolves and serialises job arguments and results; done with
recursion, a deep enough value would fail there with a RecursionError before the
script that owns the input (the preprocessor, the normaliser) could reject it with its
documented error. So: `walk` maps a tree with an explicit stack, and `dumps` / `loads`
use the C json codec (fast, but recursive) with an iterative fallback for a value too
deep for it.
"""
from __future__ import annotations

import json
import re
from json.decoder import scanstring
from typing import Any, Callable

_CONTAINERS = (dict, list, tuple)


def walk(value: Any, leaf: Callable[[Any], Any], key: Callable[[Any], Any] = lambda k: k) -> Any:
    """A copy of `value` (dicts, lists; tuples become lists) with `leaf(x)` for every
    other value and `key(k)` for every dict key."""
    if not isinstance(value, _CONTAINERS):
        return leaf(value)
    root: list = [None]
    stack = [(value, root, 0)]  # (source container, destination, slot in destination)
    while stack:
        src, dest, slot = stack.pop()
        if isinstance(src, dict):
            out: Any = {}
            for k, v in src.items():
                k = key(k)
                if isinstance(v, _CONTAINERS):
                    out[k] = None
                    stack.append((v, out, k))
                else:
                    out[k] = leaf(v)
        else:
            out = [None] * len(src)
            for i, v in enumerate(src):
                if isinstance(v, _CONTAINERS):
                    stack.append((v, out, i))
                else:
                    out[i] = leaf(v)
        dest[slot] = out
    return root[0]


def deeper_than(value: Any, limit: int) -> bool:
    """Whether dicts and lists nest more than `limit` levels (`value` itself is level 1)."""
    stack = [(value, 1)] if isinstance(value, _CONTAINERS) else []
    while stack:
        node, level = stack.pop()
        if level > limit:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, _CONTAINERS):
                stack.append((child, level + 1))
    return False


def dumps(value: Any, default: Callable[[Any], Any] = str) -> str:
    """json.dumps(value, default=default), at any depth."""
    try:
        return json.dumps(value, default=default)
    except RecursionError:
        return _dumps_iterative(value, default)


def loads(text: str) -> Any:
    """json.loads(text), at any depth."""
    try:
        return json.loads(text)
    except RecursionError:
        return _loads_iterative(text)


def _dumps_iterative(value: Any, default: Callable[[Any], Any]) -> str:
    encode = json.JSONEncoder(default=default)
    parts: list[str] = []
    stack: list = [value]  # values to write, and literal strings ("," "]" ...) between them
    while stack:
        item = stack.pop()
        if isinstance(item, _Lit):
            parts.append(item)
            continue
        if isinstance(item, dict):
            parts.append("{")
            stack.append(_Lit("}"))
            for n, (k, v) in enumerate(reversed(list(item.items()))):
                stack.append(v)
                stack.append(_Lit(_key(k, encode) + ": "))
                if n < len(item) - 1:
                    stack.append(_Lit(", "))
        elif isinstance(item, (list, tuple)):
            parts.append("[")
            stack.append(_Lit("]"))
            for n, v in enumerate(reversed(item)):
                stack.append(v)
                if n < len(item) - 1:
                    stack.append(_Lit(", "))
        elif item is None or isinstance(item, (str, int, float, bool)):
            parts.append(encode.encode(item))
        else:
            stack.append(default(item))
    return "".join(parts)


class _Lit(str):
    """Literal JSON text on the writer's stack (not a string value to encode)."""


def _key(k: Any, encode: json.JSONEncoder) -> str:
    # json.dumps: str keys as is; True/False/None/numbers as their JSON text
    if not isinstance(k, str):
        k = encode.encode(k) if k is None or isinstance(k, (bool, int, float)) else str(k)
    return encode.encode(k)


_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_WORDS = {"true": True, "false": False, "null": None, "NaN": float("nan"),
          "Infinity": float("inf"), "-Infinity": float("-inf")}


def _loads_iterative(s: str) -> Any:
    """A JSON reader with an explicit stack of open containers (json.loads semantics)."""
    stack: list = []  # open containers: [container, pending dict key]
    i = _WS.match(s, 0).end()
    while True:
        # read one value at s[i]
        ch = s[i:i + 1]
        if ch == "{" or ch == "[":
            i = _WS.match(s, i + 1).end()
            closing = "}" if ch == "{" else "]"
            if s[i:i + 1] == closing:  # empty container: a complete value
                value, i = ({} if ch == "{" else []), i + 1
            else:
                stack.append([{} if ch == "{" else [], None])
                if ch == "{":
                    i = _read_key(s, i, stack[-1])
                continue
        elif ch == '"':
            value, i = scanstring(s, i + 1)
        else:
            value, i = _scalar(s, i)
        # place it, then close every container it completes
        while True:
            if not stack:
                end = _WS.match(s, i).end()
                if end != len(s):
                    raise json.JSONDecodeError("Extra data", s, end)
                return value
            container, pending = stack[-1]
            if isinstance(container, dict):
                container[pending] = value
            else:
                container.append(value)
            i = _WS.match(s, i).end()
            sep = s[i:i + 1]
            if sep == ",":
                i = _WS.match(s, i + 1).end()
                if isinstance(container, dict):
                    i = _read_key(s, i, stack[-1])
                break
            if sep != ("}" if isinstance(container, dict) else "]"):
                raise json.JSONDecodeError("Expecting ',' delimiter", s, i)
            stack.pop()
            value, i = container, i + 1


def _read_key(s: str, i: int, frame: list) -> int:
    if s[i:i + 1] != '"':
        raise json.JSONDecodeError("Expecting property name enclosed in double quotes", s, i)
    frame[1], i = scanstring(s, i + 1)
    i = _WS.match(s, i).end()
    if s[i:i + 1] != ":":
        raise json.JSONDecodeError("Expecting ':' delimiter", s, i)
    return _WS.match(s, i + 1).end()


def _scalar(s: str, i: int) -> tuple[Any, int]:
    for word, value in _WORDS.items():
        if s.startswith(word, i):
            return value, i + len(word)
    m = _NUMBER.match(s, i)
    if not m or m.end() == i:
        raise json.JSONDecodeError("Expecting value", s, i)
    text = m.group(0)
    return (float(text) if m.group(1) or m.group(2) else int(text)), m.end()
