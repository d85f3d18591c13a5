"""What Windmill's API makes of an HTTP request to run a flow: its arguments, or the
event its preprocessor receives.

Copied from backend/windmill-api/src/args.rs@005fbdf8 (`try_from_request_body`,
`process_args`, `WebhookArgs::from_json`, `to_args_from_format`, `build_headers`,
`DecodeQueries::from_uri`) and http_trigger_args.rs@42e83f4d (`to_v2_preprocessor_args`):

- The body: no content type or `application/json` is JSON; an empty body without a
  content type is `{}`. JSON whose first character is not `{` is passed as is (a flow
  without preprocessor gets it as `{"body": value}`); invalid UTF-8 or invalid JSON (an
  empty body with a JSON content type included) is a 400 before any job. `text/plain`
  and XML bodies arrive only as `raw_string`; form bodies as their fields.
- A webhook (`jobs/run/f/...`, `run_wait_result`): `raw_string` only with `?raw=true`;
  `headers` only those named in `?include_header=` (first value, lower-cased, `-` -> `_`);
  `query` only the names in `?include_query=`.
- An HTTP route: every header under its lower-case name (a repeated one: its last
  value), every query parameter, `raw_string` per the route's setting, `method` lower-case.
- Any call of a flow with a preprocessor gets `{"event": ...}` unless the query says
  `skip_preprocessor=true` (execution.rs@3e67f263 `run_flow`).
"""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl


class BadRequest(Exception):
    """Windmill answers 400 before any job runs."""


class UnsupportedMediaType(Exception):
    """Windmill answers 415."""


Headers = list[tuple[str, str]]  # as received, in order, repeated names included


def query_params(query_string: str) -> dict[str, str]:
    """serde_urlencoded into a HashMap: a repeated name keeps its last value."""
    return dict(parse_qsl(query_string, keep_blank_values=True))


def _header_text(value: str) -> str:
    # HeaderValue::to_str: visible ASCII only, else unwrap_or("")
    return value if all(c == "\t" or " " <= c <= "~" for c in value) else ""


def _content_type(headers: Headers) -> str | None:
    return next((v for k, v in headers if k.lower() == "content-type"), None)


def parse_body(raw: bytes | bytearray, headers: Headers, use_raw: bool) -> tuple[Any, str | None]:
    """(body, raw_string) of a request: body is a dict (the arguments) or, for JSON that
    is not an object, the value itself."""
    ctype = _content_type(headers)
    if ctype is None or ctype.startswith("application/json"):
        if ctype is None and not raw:
            return {}, ("" if use_raw else None)
        text = _utf8(raw)
        return _from_json(text), (text if use_raw else None)
    if ctype.startswith(("text/plain", "application/xml", "text/xml")):
        return {}, _utf8(raw)
    if ctype.startswith("application/x-www-form-urlencoded"):
        text = _utf8(raw)
        return query_params(text), (text if use_raw else None)
    raise UnsupportedMediaType(f"content type {ctype.split(';')[0][:60]!r} is not supported by the local runner")


def _utf8(raw: bytes | bytearray) -> str:
    """The body as text; a bytearray (the server's request buffer) is emptied once decoded,
    so a large body is not held twice while its job runs."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"invalid utf8: {e}") from None
    finally:
        if isinstance(raw, bytearray):
            raw.clear()


def _not_json(word: str) -> Any:
    raise ValueError(f"{word} is not JSON")


def _from_json(text: str) -> Any:
    """serde_json: strict JSON (no NaN / Infinity); a text not starting with `{` is
    passed as is (WebhookArgs::from_json no_hashmap)."""
    try:
        return json.loads(text, parse_constant=_not_json)
    except ValueError as e:  # JSONDecodeError included
        raise BadRequest(f"invalid json: {e}") from None
    except RecursionError:  # deeper than the parser's stack: refuse, never drop the connection
        raise BadRequest("invalid json: nested too deeply") from None


def main_args(body: Any, raw_string: str | None, extra: dict | None = None) -> dict:
    """Arguments of a runnable without preprocessor (or called with skip_preprocessor):
    the body's keys, a non-object body as `body`, plus headers, query and raw_string."""
    args = dict(body) if isinstance(body, dict) else {"body": body}
    args.update(extra or {})
    if raw_string is not None:
        args["raw_string"] = raw_string
    return args


def webhook_call(query_string: str, headers: Headers, raw: bytes, *,
                 has_preprocessor: bool) -> tuple[dict, dict | None]:
    """(args, preprocessor event or None) of a POST to jobs/run[_wait_result]/f/<path>."""
    query = query_params(query_string)
    body, raw_string = parse_body(raw, headers, query.get("raw") == "true")
    picked = _included_headers(headers, query.get("include_header"))
    included_query = {name: query[name] for name in (query.get("include_query") or "").split(",")
                      if name in query}
    if has_preprocessor and query.get("skip_preprocessor") != "true":
        return {}, {"kind": "webhook", "body": body, "raw_string": raw_string,
                    "headers": picked, "query": included_query}
    return main_args(body, raw_string, {**picked, **included_query}), None


def _included_headers(headers: Headers, include: str | None) -> dict:
    out = {}
    for name in (include or "").split(","):
        value = next((v for k, v in headers if k.lower() == name.lower()), None) if name else None
        if value is not None:  # HeaderMap::get: the first value
            out[name.lower().replace("-", "_")] = _header_text(value)
    return out


def route_call(*, route_path: str, called_path: str, params: dict, method: str, query_string: str,
               headers: Headers, raw: bytes, raw_string: bool, has_preprocessor: bool) -> tuple[dict, dict | None]:
    """(args, preprocessor event or None) of a request to an HTTP route."""
    body, text = parse_body(raw, headers, raw_string)
    if has_preprocessor:
        return {}, {"kind": "http", "route": route_path, "path": called_path, "body": body,
                    "raw_string": text, "params": params,
                    "headers": {k.lower(): _header_text(v) for k, v in headers},
                    "query": query_params(query_string), "method": method.lower()}
    return main_args(body, text), None
