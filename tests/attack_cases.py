"""Attack and bad-input deliveries against the real local server and flows (issue 7, item 2).

`CASES` lists every case with the outcome it must have:

    rejected_http           a 4xx before any job runs (not UTF-8, not JSON, too deep, too big)
    rejected_preprocessor   the flow's preprocessor refuses it (signature, headers, body shape)
                            and its failure module records nothing
    recorded_failed         a signed delivery the worker could not hand to the preprocessor
                            (text that resolves to a missing `$var:`): the failure module
                            verified it and recorded it failed (step preprocessor) for replay
    stored                  a signed delivery, kept inertly: an inbox row (processed, ignored,
                            failed or duplicate), its text stored as data and rendered escaped

Injections (`$var:`, `$res:`, `$encrypted:`, `$WM_TOKEN`) go into every header, the query
and a route parameter, on both endpoints: a Windmill worker resolves them in the
preprocessor's own arguments (common.rs `transform_json`), so the check that scans every
response, job result, log line, row and outbox entry looks for each configured secret
(the webhook secret, a secret variable and a resource's token) and for any job token.

`Harness` serves the bundle's flows on 127.0.0.1 (the local runner's `make serve` App,
in-process) and sends each case as Dodo would, to the webhook URL and to the HTTP
route, over real sockets. For each case it snapshots every table of the schema before
and after, and checks that only rows carrying the case's own markers changed; then a
normal delivery must still succeed (no worker died). The test (tests/test_attack.py)
and the report (bench/bench_attack.py) share it.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import quote

import httpx

from fixture_data import FIXTURE_SECRET, envelope, sign
from f.dodo.lib import db as dblib
from local_runner import Runner
from local_runner.demo import ROOT, bundle_config, quiet_wmill_client
from local_runner.server import DEFAULT_BODY_LIMIT, App, HttpRoute, make_server

SCHEMA = "dodo"  # the scripts' default schema
JOINER = "\u2060"  # WORD JOINER, written out: never taken from the code under test
OTHER_SECRET = "whsec_" + base64.b64encode(b"an-attacker-chosen-signing-key!!").decode()
# Configured in the harness's workspace beside the webhook secret: a secret variable and a
# resource holding a token, both named by the injections below.
CANARY_VARIABLE, CANARY_RESOURCE = "f/dodo/attack_canary", "f/dodo/attack_canary_resource"
CANARY_SECRET = "canary-" + uuid.uuid4().hex
CANARY_TOKEN = "canary-token-" + uuid.uuid4().hex
# Secret material that must never appear in a response, job result, log, row or outbox.
SECRETS = [FIXTURE_SECRET, FIXTURE_SECRET.removeprefix("whsec_"),
           base64.b64decode(FIXTURE_SECRET.removeprefix("whsec_")).decode(),
           OTHER_SECRET, OTHER_SECRET.removeprefix("whsec_"), CANARY_SECRET, CANARY_TOKEN]
JOB_TOKEN_PREFIX = "wm_job_"  # every job's WM_TOKEN (local_runner/jobenv.py): none may leak either
HEADERS = "webhook-id,webhook-timestamp,webhook-signature"
WEBHOOK = f"/api/w/demo/jobs/run/f/f/dodo/webhook?raw=true&include_header={HEADERS}"
ROUTE = "/api/r/dodo/webhook"
# A route with a parameter to the same flow, as a merchant may add (the harness mounts it)
PARAM_ROUTE = "dodo/webhook/:tenant"
TARGETS = {"webhook": WEBHOOK, "route": ROUTE}
TEST_BODY_LIMIT = 8 * 1024 * 1024  # the tests' limit; `make serve` uses Windmill's 200 MB
assert TEST_BODY_LIMIT < DEFAULT_BODY_LIMIT

# Free text an attacker controls (their own name, email, metadata at checkout).
INJECTIONS = {
    "sql": "Robert'); DROP TABLE payments; --",
    "sql_quote": "' OR '1'='1' --",
    "html": "<script>alert(1)</script><img src=x onerror=alert(1)>",
    "slack_mrkdwn": "<!channel> <@U024BE7LH> <https://evil.example/login|Reset password> *urgent* @here",
    "crlf": "Eve\r\nBcc: everyone@example.com\r\n\r\nbody",
    "nul": "Nul\u0000Byte",
    "windmill_var": "$var:f/dodo/webhook_secret",
    "windmill_res": "$res:f/dodo/postgres",
    "js_template": "${flow_input.event}`); throw 1; //",
    "bidi": "\u202egnp.exe",
}
# Worker-resolved text in a header, the query or a route parameter (not the signed body)
RESOLVED = {
    "webhook_secret": "$var:f/dodo/webhook_secret",
    "secret_variable": f"$var:{CANARY_VARIABLE}",
    "resource": f"$res:{CANARY_RESOURCE}",
    "job_token": "$WM_TOKEN",
}
UNRESOLVABLE = {"missing_variable": "$var:f/dodo/no_such_variable", "bad_encrypted": "$encrypted:not-ciphertext"}
OUTCOMES = ("rejected_http", "rejected_preprocessor", "recorded_failed", "stored")


@dataclass
class Request:
    body: bytes
    headers: list[tuple[str, str]]
    ids: dict = field(default_factory=dict)  # msg, pay, cus, ref, dsp: rows this case may change
    path: str | None = None        # overrides the target (e.g. a webhook URL without raw=true)
    raw: bytes | None = None       # sent as is over a socket (bad content-length, truncation)


@dataclass
class Case:
    name: str
    expect: str
    build: Callable[[str], Request]          # target -> request, signed at send time
    targets: tuple[str, ...] = ("webhook", "route")
    prime: bool = False                      # deliver once normally first (replays)
    stored_as: dict | None = None            # {table.column: expected text} after storage


@dataclass
class Outcome:
    case: str
    target: str
    outcome: str
    status: int | None = None
    detail: str = ""
    inbox: str | None = None


# ---------------------------------------------------------------- building deliveries


def _ids(tag: str) -> dict:
    u = uuid.uuid4().hex[:12]
    return {"msg": f"msg_atk_{tag}_{u}", "pay": f"pay_atk{u}", "cus": f"cus_atk{u}", "ref": f"ref_atk{u}",
            "dsp": f"dsp_atk{u}"}


def _payment(ids: dict, etype: str = "payment.failed") -> dict:
    e = envelope(etype)
    e["data"].update(payment_id=ids["pay"])
    e["data"]["customer"] = dict(e["data"]["customer"], customer_id=ids["cus"])
    return e


def _signed(e: dict | str, ids: dict, *, secret: str = FIXTURE_SECRET, ts: int | None = None) -> Request:
    body = e if isinstance(e, str) else json.dumps(e)
    h = sign(body, secret, ids["msg"], ts)
    return Request(body.encode(), list(h.items()), dict(ids))


def valid(tag: str = "ok") -> Request:
    ids = _ids(tag)
    return _signed(_payment(ids, "payment.succeeded"), ids)


def _variant(tag: str, change: Callable[[Request, dict], Request | None], **sign_kw) -> Callable[[str], Request]:
    def build(target: str) -> Request:
        ids = _ids(tag)
        r = _signed(_payment(ids), ids, **sign_kw)
        return change(r, ids) or r
    return build


def _headers(r: Request, drop=(), add=()) -> Request:
    r.headers = [(k, v) for k, v in r.headers if k not in drop] + list(add)
    return r


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def _raw(r: Request, path_target: str, length: int | str, body: bytes) -> Request:
    head = "".join(f"{k}: {v}\r\n" for k, v in r.headers)
    r.raw = (f"POST {path_target} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
             f"{head}content-length: {length}\r\nconnection: close\r\n\r\n").encode() + body
    return r


def _injected(tag: str, text: str, etype: str) -> Callable[[str], Request]:
    """`text` in every free-text field of a signed `etype` event."""
    def build(target: str) -> Request:
        ids = _ids(tag)
        e = _payment(ids, etype) if etype.startswith("payment") else envelope(etype)
        d = e["data"]
        d.update(payment_id=ids["pay"])
        d["customer"] = dict(d["customer"], customer_id=ids["cus"], name=text, email=f"x{text}@example.com",
                             phone_number=text, metadata={text: text})
        if "metadata" in d:
            d["metadata"] = {text: text, "note": text}
        if "billing" in d:
            d["billing"] = dict(d["billing"], street=text, city=text)
        for key in ("error_message", "reason", "remarks"):
            if key in d:
                d[key] = text
        d.update({k: ids[v] for k, v in (("refund_id", "ref"), ("dispute_id", "dsp")) if k in d})
        return _signed(e, ids)
    return build


def _in_header(tag: str, name: str, text: str) -> Callable[[str], Request]:
    return _variant(tag, lambda r, i: _headers(r, [name], [(name, text)]))


def _extra(tag: str, where: str, text: str) -> Callable[[str], Request]:
    """A genuine signed delivery with `text` in an extra header, the query or a route
    parameter: nothing the signature covers."""
    def build(target: str) -> Request:
        r = valid(tag)
        if where == "header":
            r.headers.append(("x-inject", text))
        elif where == "query":
            base = TARGETS[target]
            r.path = base + ("&include_query=q&q=" if "?" in base else "?q=") + quote(text, safe="")
        else:
            r.path = f"/api/r/dodo/webhook/{quote(text, safe='')}"
        return r
    return build


def _resolution_cases() -> list[Case]:
    """Worker-resolved injections: in each of the three signed headers (the delivery is
    refused, nothing echoed), and beside a genuine delivery in an extra header, the query
    or a route parameter (stored; text the worker cannot resolve fails the preprocessor job,
    and the failure module records the genuine delivery failed, for replay)."""
    cases = []
    for label, text in {**RESOLVED, "missing_variable": UNRESOLVABLE["missing_variable"]}.items():
        for header in ("webhook-id", "webhook-timestamp", "webhook-signature"):
            cases.append(Case(f"resolve_{label}_in_{header}", "rejected_preprocessor",
                              _in_header(f"h{label[:6]}", header, text)))
    for label, text in {**RESOLVED, **UNRESOLVABLE}.items():
        resolved = label in RESOLVED
        cases += [
            # a webhook passes only the include_header headers: the extra one never arrives
            Case(f"resolve_{label}_in_extra_header", "stored", _extra(f"x{label[:6]}", "header", text), ("webhook",)),
            Case(f"resolve_{label}_in_extra_header", "stored" if resolved else "recorded_failed",
                 _extra(f"x{label[:6]}", "header", text), ("route",)),
            Case(f"resolve_{label}_in_query", "stored" if resolved else "recorded_failed",
                 _extra(f"q{label[:6]}", "query", text)),
            Case(f"resolve_{label}_in_route_param", "stored" if resolved else "recorded_failed",
                 _extra(f"p{label[:6]}", "param", text), ("route",)),
        ]
    return cases


def stored_text(text: str) -> str:
    """What Postgres holds for `text`: U+0000 cannot be stored (U+FFFD), a leading `$`
    is defused (f/dodo/lib/inert.py)."""
    text = text.replace("\x00", "\ufffd")
    return JOINER + text if text.startswith("$") else text


def _cases() -> list[Case]:
    now = lambda: int(time.time())  # noqa: E731
    forged_sig = "v1," + base64.b64encode(os.urandom(32)).decode()
    cases = [
        # -- signature
        Case("forged_signature", "rejected_preprocessor",
             _variant("forged", lambda r, i: _headers(r, ["webhook-signature"], [("webhook-signature", forged_sig)]))),
        Case("tampered_amount", "rejected_preprocessor",
             _variant("tamper", lambda r, i: setattr(r, "body", r.body.replace(b'"total_amount": 2999', b'"total_amount": 1')))),
        Case("replayed_old_timestamp", "rejected_preprocessor", lambda t: _signed(
            _payment(i := _ids("old")), i, ts=now() - 3600)),
        Case("timestamp_from_the_future", "rejected_preprocessor", lambda t: _signed(
            _payment(i := _ids("future")), i, ts=now() + 3600)),
        Case("resigned_with_another_secret", "rejected_preprocessor", lambda t: _signed(
            _payment(i := _ids("other")), i, secret=OTHER_SECRET)),
        Case("signature_not_v1", "rejected_preprocessor",
             _variant("v2", lambda r, i: _headers(r, ["webhook-signature"], [("webhook-signature", "v2," + forged_sig[3:])]))),
        Case("signature_garbage", "rejected_preprocessor",
             _variant("garbage", lambda r, i: _headers(r, ["webhook-signature"], [("webhook-signature", "not base64 !!")]))),
        Case("replayed_duplicate_in_tolerance", "stored", None, prime=True),
        # -- headers
        Case("missing_signature", "rejected_preprocessor", _variant("nosig", lambda r, i: _headers(r, ["webhook-signature"]))),
        Case("missing_timestamp", "rejected_preprocessor", _variant("nots", lambda r, i: _headers(r, ["webhook-timestamp"]))),
        Case("missing_all_headers", "rejected_preprocessor",
             _variant("nohdr", lambda r, i: _headers(r, ["webhook-id", "webhook-timestamp", "webhook-signature"]))),
        Case("timestamp_not_a_number", "rejected_preprocessor",
             _variant("tsnan", lambda r, i: _headers(r, ["webhook-timestamp"], [("webhook-timestamp", "12e9")]))),
        Case("duplicated_forged_signatures", "rejected_preprocessor",
             _variant("dupsig", lambda r, i: _headers(r, ["webhook-signature"], [("webhook-signature", forged_sig),
                                                                                  ("webhook-signature", "v1,AAAA")]))),
        Case("duplicated_identical_headers", "stored",
             lambda t: _headers(r := valid("dupsame"), add=list(r.headers))),
        Case("conflicting_ids_in_one_header", "rejected_preprocessor",
             _variant("idjoin", lambda r, i: _headers(r, ["webhook-id"], [("webhook-id", f"{i['msg']}, msg_other")]))),
        # A webhook passes a repeated header's first value (HeaderMap::get), a route its last
        Case("duplicated_id_header_unsigned_second", "stored",
             _variant("iddup", lambda r, i: _headers(r, add=[("webhook-id", "msg_atk_unsigned")])), ("webhook",)),
        Case("duplicated_id_header_unsigned_second", "rejected_preprocessor",
             _variant("iddup", lambda r, i: _headers(r, add=[("webhook-id", "msg_atk_unsigned")])), ("route",)),
        Case("webhook_url_without_include_header", "rejected_preprocessor",
             lambda t: setattr(r := valid("noinc"), "path", WEBHOOK.split("&")[0]) or r, targets=("webhook",)),
        Case("webhook_url_without_raw", "rejected_preprocessor",
             lambda t: setattr(r := valid("noraw"), "path", WEBHOOK.replace("raw=true&", "")) or r,
             targets=("webhook",)),
        # -- bodies
        Case("truncated_body", "rejected_http", _variant("trunc", lambda r, i: setattr(r, "body", r.body[: len(r.body) // 2]))),
        Case("truncated_to_other_valid_json", "rejected_preprocessor", lambda t: setattr(
            r := _signed(json.dumps(_payment(i := _ids("ws"))) + "\n", i), "body", r.body.rstrip()) or r),
        Case("truncated_in_transit", "rejected_http",
             lambda t: _raw(r := valid("transit"), TARGETS[t], len(r.body), r.body[: len(r.body) // 2])),
        Case("oversized_declared", "rejected_http", lambda t: _raw(valid("big"), TARGETS[t], TEST_BODY_LIMIT + 1, b"")),
        Case("content_length_1e15", "rejected_http", lambda t: _raw(valid("huge_cl"), TARGETS[t], 10**15, b"{}")),
        Case("content_length_negative", "rejected_http", lambda t: _raw(valid("neg_cl"), TARGETS[t], "-1", b"{}")),
        Case("non_json", "rejected_http", lambda t: _signed("hello, not json", _ids("nonjson"))),
        Case("non_utf8", "rejected_http",
             _variant("latin1", lambda r, i: setattr(r, "body", r.body.replace(b"Ana Souza", "Ana Souzá".encode("latin-1"))))),
        Case("empty_body", "rejected_http", lambda t: _signed("", _ids("empty"))),  # JSON content type
        Case("json_array", "rejected_preprocessor", lambda t: _signed("[1, 2, 3]", _ids("array"))),
        Case("json_nan", "rejected_http", lambda t: _signed('{"type": "payment.failed", "x": NaN}', _ids("nan"))),
        Case("nested_100k_levels", "rejected_http", lambda t: _signed(_nested(100_000), _ids("deep100k"))),
        Case("nested_2000_levels", "rejected_http", lambda t: _signed(_nested(2000), _ids("deep2k"))),
        Case("nested_600_levels", "rejected_preprocessor", lambda t: _signed(_nested(600), _ids("deep600"))),
        # Past signature.MAX_DEPTH (127, the depth Windmill's worker can parse) / within it.
        Case("nested_200_levels_in_metadata", "rejected_preprocessor", lambda t: _signed(
            dict(e := _payment(i := _ids("deepmeta")), data=dict(e["data"], metadata=json.loads(_nested(200)))), i)),
        Case("nested_100_levels_in_metadata", "stored", lambda t: _signed(
            dict(e := _payment(i := _ids("meta100")), data=dict(e["data"], metadata=json.loads(_nested(100)))), i)),
        Case("nul_in_event_type", "stored", lambda t: _signed(
            dict(_payment(i := _ids("nultype")), type="payment.failed\u0000"), i)),
        Case("signed_event_missing_ids", "stored", lambda t: _signed(
            {"business_id": "bus_x", "type": "payment.succeeded", "timestamp": "2026-03-02T10:16:00Z", "data": {}},
            _ids("noids"))),
    ]
    # Injections pass the HTTP layer like any signed delivery: one target each, alternating.
    for n, (label, text) in enumerate(INJECTIONS.items()):
        expected = stored_text(text)
        one, other = (("webhook",), ("route",))[::1 if n % 2 else -1]
        cases += [
            Case(f"inject_{label}_payment", "stored", _injected(label, text, "payment.failed"), one,
                 stored_as={"customers.name": expected, "payments.error_message": expected}),
            Case(f"inject_{label}_dispute", "stored", _injected(label, text, "dispute.opened"), other,
                 stored_as={"disputes.remarks": expected, "disputes.reason": expected}),
            Case(f"inject_{label}_refund", "stored", _injected(label, text, "refund.succeeded"), one,
                 stored_as={"refunds.reason": expected}),
        ]
    cases += _resolution_cases()
    return cases + [  # last: every snapshot after them reads their rows
        Case("huge_metadata_4mb", "stored", lambda t: _signed(
            dict(e := _payment(i := _ids("hugemeta")), data=dict(e["data"], metadata={"blob": "x" * 4_000_000})), i)),
        Case("metadata_20k_keys", "stored", lambda t: _signed(
            dict(e := _payment(i := _ids("keys")), data=dict(e["data"], metadata={f"k{n}": n for n in range(20_000)})), i)),
    ]


CASES = _cases()


# ---------------------------------------------------------------- the harness


class _Collect(logging.Handler):
    def __init__(self, sink: list):
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record):
        self.sink.append(self.format(record))


class Harness:
    """The bundle served on 127.0.0.1 over a real Postgres; `send(case, target)`."""

    def __init__(self, pg_url: str, outbox: str):
        os.environ["DODO_OUTBOX"] = outbox
        self.outbox = outbox
        self.pg_url = pg_url
        self.conn = dblib.connect(pg_url, SCHEMA)
        quiet_wmill_client()
        self.sleeps: list[float] = []
        config = bundle_config(pg_url, FIXTURE_SECRET)
        config.variables[CANARY_VARIABLE] = CANARY_SECRET
        config.resources[CANARY_RESOURCE] = {"token": CANARY_TOKEN}
        self.runner = Runner(ROOT, config, sleep=self.sleeps.append)
        self.job_results: list[str] = []  # every job's result, each run's jobs included
        run_flow = self.runner.run_flow

        def recording_run_flow(*args, **kwargs):
            run = run_flow(*args, **kwargs)
            self.job_results.append(json.dumps([j.result for j in run.jobs], default=str))
            return run
        self.runner.run_flow = recording_run_flow
        self.app = App(self.runner, workers=2, max_body=TEST_BODY_LIMIT)
        entry = next(r for r in self.app.routes if r.script_path == "f/dodo/webhook")
        self.app.routes.append(HttpRoute(entry.trigger_path, PARAM_ROUTE, "POST", entry.script_path, True,
                                         True, False, re.compile(r"^dodo/webhook/(?P<tenant>[^/]+)$")))
        self.server = make_server(self.app, "127.0.0.1", 0)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=120)
        self.responses: list[str] = []
        self.logs: list[str] = []
        self._log = _Collect(self.logs)
        logging.getLogger().addHandler(self._log)

    def close(self) -> None:
        logging.getLogger().removeHandler(self._log)
        self.http.close()
        self.server.shutdown()
        self.server.server_close()
        self.conn.close()

    # -- sending

    def post(self, req: Request, target: str) -> tuple[int | None, str]:
        if req.raw is not None:
            return self._post_raw(req.raw)
        r = self.http.post(req.path or TARGETS[target], content=req.body,
                           headers=[("content-type", "application/json"), *req.headers])
        return r.status_code, r.text

    def _post_raw(self, data: bytes) -> tuple[int | None, str]:
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as s:
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)  # the rest of the body never comes
            except OSError:
                pass  # the server may answer and close before reading everything
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        reply = b"".join(chunks).decode("utf-8", "replace")
        if not reply.startswith("HTTP/1."):
            return None, reply
        return int(reply.split(" ", 2)[1]), reply.split("\r\n\r\n", 1)[-1]

    def wait(self, job_id: str) -> dict:
        deadline = time.monotonic() + 120  # a bound against hangs, not a speed assertion
        while time.monotonic() < deadline:
            job = self.http.get(f"/api/w/demo/jobs_u/get/{job_id}").json()
            if job["type"] == "CompletedJob":
                return job
            time.sleep(0.01)
        raise AssertionError(f"job {job_id} never completed")

    def deliver(self, req: Request, target: str) -> tuple[int | None, str, dict | None]:
        status, text = self.post(req, target)
        self.responses.append(text)
        job = self.wait(text.strip()) if status == 201 else None
        return status, text, job

    def send(self, case: Case, target: str) -> tuple[Outcome, Request]:
        req = case.build(target) if case.build else None
        if case.prime:  # a genuine delivery, then Dodo's retry of it (same id, new timestamp)
            req = valid(case.name)
            status, _, job = self.deliver(req, target)
            assert status == 201 and job["success"], job
            time.sleep(1)
            req = _signed(req.body.decode(), req.ids, ts=int(time.time()))
        status, text, job = self.deliver(req, target)
        if job is None:
            kind = "rejected_http" if status is not None and 400 <= status < 500 else f"http_{status}"
            return Outcome(case.name, target, kind, status, text[:200]), req
        pre = [j for j in job["local_jobs"] if j["kind"] == "preprocessor"]
        if pre and not pre[0]["success"]:
            detail = json.dumps(job["result"])[:300]
            row = self.conn.execute("SELECT status, failed_step FROM webhook_events WHERE webhook_id = %s",
                                    (_webhook_id(req),)).fetchone()
            kind = "recorded_failed" if row == ("failed", "preprocessor") else "rejected_preprocessor"
            return Outcome(case.name, target, kind, status, detail, row and row[0]), req
        row = self.conn.execute("SELECT status FROM webhook_events WHERE webhook_id = %s",
                                (_webhook_id(req),)).fetchone()
        result = job["result"]
        duplicate = isinstance(result, dict) and result.get("status") == "duplicate"
        outcome = "stored" if row else "not_stored"
        return Outcome(case.name, target, outcome, status, json.dumps(result)[:300],
                       "duplicate" if duplicate else row and row[0]), req

    # -- state

    def snapshot(self) -> dict[str, set[str]]:
        tables = [t for (t,) in self.conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "AND table_type = 'BASE TABLE' ORDER BY 1", (SCHEMA,))]
        return {t: {r for (r,) in self.conn.execute(f'SELECT t::text FROM "{SCHEMA}"."{t}" t')} for t in tables}

    def stored_values(self, case: Case, req: Request) -> dict[str, str | None]:
        """The columns named by `case.stored_as`, read back by the case's own ids."""
        keys = {"customers": ("customer_id", "cus"), "payments": ("payment_id", "pay"),
                "refunds": ("refund_id", "ref"), "disputes": ("dispute_id", "dsp")}
        out = {}
        for name in case.stored_as or {}:
            table, column = name.split(".")
            key, ident = keys[table]
            row = self.conn.execute(f"SELECT {column} FROM {table} WHERE {key} = %s", (req.ids[ident],)).fetchone()
            out[name] = row and row[0]
        return out

    def canary(self, target: str = "webhook") -> bool:
        """A normal delivery still goes all the way through."""
        _, _, job = self.deliver(valid("canary"), target)
        return bool(job and job["success"])

    def workers_alive(self) -> bool:
        return all(w.is_alive() for w in self.app.workers)

    def everything_said(self) -> str:
        """Every response, job record, log line, row and outbox entry, for the secret scan."""
        with self.app.lock:
            jobs = json.dumps(list(self.app.jobs.values()), default=str)
        rows = json.dumps({t: sorted(r) for t, r in self.snapshot().items()})
        out = open(self.outbox, encoding="utf-8").read() if os.path.exists(self.outbox) else ""
        return "\n".join([*self.responses, jobs, *self.job_results, *self.logs, rows, out])


FRAGMENT = 16  # a leak may be cut short (an error quoting 40 characters of a header)


def leaked_secrets(said: str) -> list[int]:
    """Indexes of SECRETS of which any FRAGMENT-character piece appears in `said`."""
    return [n for n, secret in enumerate(SECRETS)
            if any(secret[i:i + FRAGMENT] in said for i in range(max(1, len(secret) - FRAGMENT + 1)))]


def redact(text: str) -> str:
    for s in SECRETS:
        text = text.replace(s, "<secret>")
    return text


def _webhook_id(req: Request) -> str | None:
    return next((v for k, v in req.headers if k == "webhook-id"), None)


def changed_rows(before: dict[str, set[str]], after: dict[str, set[str]]) -> dict[str, set[str]]:
    return {t: (after.get(t, set()) ^ before.get(t, set())) for t in set(before) | set(after)
            if after.get(t, set()) ^ before.get(t, set())}


def foreign_changes(before, after, markers: list[str]) -> dict[str, list[str]]:
    """Rows that changed without carrying one of the case's markers: a wrong state change."""
    out = {}
    for table, rows in changed_rows(before, after).items():
        bad = [r[:200] for r in rows if not any(m in r for m in markers)]
        if bad:
            out[table] = bad
    return out


def run_all(pg_url: str, outbox: str, cases: list[Case] = CASES) -> dict:
    """Every case over both targets; the figures of the attack report."""
    h = Harness(pg_url, outbox)
    outcomes, problems = [], []
    try:
        for case in cases:
            for target in case.targets:
                before = h.snapshot()
                got, req = h.send(case, target)
                outcomes.append(got)
                after = h.snapshot()
                if got.outcome != case.expect:
                    problems.append(redact(f"{case.name}/{target}: {got.outcome} ({got.detail[:120]})"))
                if got.outcome not in ("stored", "recorded_failed") and changed_rows(before, after):
                    problems.append(f"{case.name}/{target}: state changed by a rejected request")
                if foreign_changes(before, after, list(req.ids.values())):
                    problems.append(f"{case.name}/{target}: rows of other deliveries changed")
                wrong = {k: v for k, v in h.stored_values(case, req).items() if v != case.stored_as[k]} \
                    if case.stored_as and got.outcome == "stored" else {}
                if wrong:
                    problems.append(f"{case.name}/{target}: stored {redact(repr(wrong))}")
                if not (h.workers_alive() and h.canary(target)):
                    problems.append(f"{case.name}/{target}: server stopped serving")
        said = h.everything_said()
        leaks = leaked_secrets(said) + (["job token"] if JOB_TOKEN_PREFIX in said else [])
    finally:
        h.close()
    counts = {k: sum(o.outcome == k for o in outcomes) for k in OUTCOMES}
    return {"deliveries": len(outcomes), "cases": len(cases), **counts,
            "unexpected": len(problems), "secret_leaks": len(leaks), "problems": problems[:20]}


def start_pg_schema(pg_url: str) -> None:
    dblib.connect(pg_url, SCHEMA, migrate=True).close()


def drop_pg_schema(pg_url: str) -> None:
    with dblib.connect(pg_url, check=False) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
    dblib.forget_migrated(SCHEMA)
