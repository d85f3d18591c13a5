"""Stand-ins of the per-event destinations' APIs on one loopback HTTP server: PostHog
capture, a Segment-spec HTTP tracking API, Mailchimp list members and Google Calendar
events. The demo points the f/dodo/posthog, segment, mailchimp and gcal resources at them
(`make demo` lists what each received); the soak (bench/soak.py) injects faults here and
counts doubles and losses per provider; the tests use the request checks.

Each request is checked as the provider documents it (the checks below: a failure is
counted in `bad_requests` and answered 400) and kept as the provider keeps it:
- PostHog: events by `uuid` (PostHog drops a second event with the same uuid);
- Segment: calls by `messageId` (Segment deduplicates on it);
- Mailchimp: members by subscriber hash (MD5 of the lower-case email) with status, merge
  fields and tags; tags of a member that does not exist: 404;
- Google Calendar: events by id; PUT of an unknown id 404; insert of an id that exists,
  even deleted, 409 (a deleted event stays, `status: cancelled`, and its id stays taken);
  PUT of a deleted event restores it; DELETE of a deleted one 410, of an unknown one 404.

`fault()` (the soak's) is drawn per request: "429" (with Retry-After: 1), "5xx", "drop"
(the connection closed without an answer), or "5xx-after" / "drop-after" (the write is
applied, then the answer is lost).
"""
from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from collections import Counter
from typing import Callable

from werkzeug import Request, Response
from werkzeug.serving import WSGIRequestHandler, make_server

POSTHOG_KEY = "phc_standin_project_key"
SEGMENT_KEY = "segment-standin-write-key"
MAILCHIMP_KEY = "0123456789abcdef0123456789abcdef-us1"
MAILCHIMP_LIST = "standin01"
GCAL_TOKEN = "ya29.standin-token"

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")


def _exact_money(props: dict) -> None:
    for key in ("revenue", "amount", "mrr"):
        if key in props:
            assert isinstance(props[key], str) and DECIMAL.match(props[key]), (key, props[key])
            assert isinstance(props.get("currency"), str) and len(props["currency"]) == 3, props


def posthog_capture(request, api_key: str) -> dict:
    """PostHog capture API (posthog.com/docs/api/capture): POST /i/v0/e/ (or /capture/),
    JSON `{api_key, event, distinct_id, properties?, timestamp?, uuid?}`; the project key
    in the body, no auth header. The bundle's uuid is a UUID and its money decimal strings.
    Returns the body."""
    assert request.method == "POST" and request.path in ("/i/v0/e/", "/capture/"), request.path
    assert request.headers.get("Content-Type", "").startswith("application/json")
    body = request.get_json()
    assert isinstance(body, dict) and set(body) <= {"api_key", "event", "distinct_id", "properties",
                                                    "timestamp", "uuid"}, body
    assert body.get("api_key") == api_key, "api_key"
    assert isinstance(body.get("event"), str) and body["event"], body
    assert isinstance(body.get("distinct_id"), str) and body["distinct_id"], body
    assert UUID.match(body.get("uuid", "")), body.get("uuid")
    assert ISO.match(body.get("timestamp", "")), body.get("timestamp")
    assert isinstance(body.get("properties", {}), dict)
    _exact_money(body.get("properties", {}))
    return body


def segment_call(request, write_key: str) -> tuple[str, dict]:
    """Segment HTTP Tracking API (segment.com/docs/.../http-api): POST /v1/identify or
    /v1/track, HTTP Basic auth with the write key as user name and an empty password, a
    JSON body with userId or anonymousId, messageId, timestamp; track: `event` and
    `properties`; identify: `traits`. Returns (call, body)."""
    assert request.method == "POST" and request.path in ("/v1/identify", "/v1/track"), request.path
    auth = request.authorization
    assert auth is not None and auth.type == "basic" and (auth.username, auth.password or "") == (write_key, "")
    assert request.headers.get("Content-Type", "").startswith("application/json")
    body = request.get_json()
    call = request.path.rsplit("/", 1)[1]
    allowed = {"userId", "anonymousId", "messageId", "timestamp", "context", "integrations"} | (
        {"event", "properties"} if call == "track" else {"traits"})
    assert isinstance(body, dict) and set(body) <= allowed, body
    assert body.get("userId") or body.get("anonymousId"), body
    assert isinstance(body.get("messageId"), str) and body["messageId"], body
    assert ISO.match(body.get("timestamp", "")), body.get("timestamp")
    if call == "track":
        assert isinstance(body.get("event"), str) and body["event"], body
        _exact_money(body.get("properties", {}))
    else:
        assert isinstance(body.get("traits"), dict), body
    return call, body


MAILCHIMP_MEMBER = re.compile(r"^/3\.0/lists/([^/]+)/members/([0-9a-f]{32})(/tags)?$")
MEMBER_FIELDS = {"email_address", "status_if_new", "status", "merge_fields", "email_type", "language",
                 "vip", "interests", "tags"}
MEMBER_STATUSES = {"subscribed", "unsubscribed", "cleaned", "pending", "transactional"}


def mailchimp_call(request, api_key: str, list_id: str) -> tuple[str, str, dict]:
    """Mailchimp Marketing API 3.0 (mailchimp.com/developer/marketing/api/list-members):
    HTTP Basic auth with any user name and the API key as password; PUT
    /3.0/lists/{list_id}/members/{md5(lower email)} with `email_address` (matching the
    hash) and `status_if_new`; POST .../{hash}/tags with {"tags": [{name, status:
    active|inactive}]}. Returns (PUT|TAGS, subscriber hash, body)."""
    match = MAILCHIMP_MEMBER.match(request.path)
    assert match and match.group(1) == list_id, request.path
    auth = request.authorization
    assert auth is not None and auth.type == "basic" and auth.password == api_key and auth.username
    body = request.get_json()
    if match.group(3):
        assert request.method == "POST", request.method
        assert set(body) == {"tags"} and body["tags"], body
        assert all(set(t) == {"name", "status"} and t["status"] in ("active", "inactive") for t in body["tags"]), body
        return "TAGS", match.group(2), body
    assert request.method == "PUT", request.method
    assert set(body) <= MEMBER_FIELDS and body.get("email_address"), body
    assert hashlib.md5(body["email_address"].lower().encode()).hexdigest() == match.group(2), body  # noqa: S324
    assert body.get("status_if_new") in MEMBER_STATUSES, body
    assert all(isinstance(v, str) for v in body.get("merge_fields", {}).values()), body
    return "PUT", match.group(2), body


GCAL_EVENTS = re.compile(r"^/calendar/v3/calendars/([^/]+)/events(?:/([^/]+))?$")
GCAL_ID = re.compile(r"^[a-v0-9]{5,1024}$")


def gcal_call(request, token: str) -> tuple[str, str | None, dict | None]:
    """Google Calendar API v3 events (developers.google.com/calendar/api/v3/reference/events):
    Bearer token; POST .../events (insert, our `id` in base32hex a-v0-9, 5-1024 long),
    PUT/DELETE .../events/{eventId}; an event body has `start` and `end` with `date` or
    `dateTime`. Returns (method, event id, body)."""
    match = GCAL_EVENTS.match(request.path)
    assert match, request.path
    assert request.headers.get("Authorization") == f"Bearer {token}"
    eid = match.group(2)
    if request.method == "DELETE":
        assert eid and GCAL_ID.match(eid), eid
        return "DELETE", eid, None
    body = request.get_json()
    assert request.method in ("POST", "PUT") and (eid is None) == (request.method == "POST"), request.method
    if request.method == "POST":
        eid = body.get("id")
    assert eid and GCAL_ID.match(eid), eid
    for edge in ("start", "end"):
        assert isinstance(body.get(edge), dict) and (body[edge].get("date") or body[edge].get("dateTime")), body
    assert isinstance(body.get("summary"), str), body
    return request.method, eid, body


# ---------------------------------------------------------------- the stand-ins

class _Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):  # no per-request log lines
        pass


def json_response(status: int, body, headers: dict | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")


class WsgiStandIn:
    """A threaded loopback server answering each request with `self.handle(request)`;
    `url`, `close()`. Shared by these stand-ins and the soak's (bench/soak_standins.py)."""

    def _serve(self, port: int = 0, name: str | None = None) -> None:
        self.server = make_server("127.0.0.1", port, self.wsgi, threaded=True, request_handler=_Quiet)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name=name)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wsgi(self, environ, start_response):
        return self.handle(Request(environ))(environ, start_response)

    def handle(self, req: Request) -> Response:
        raise NotImplementedError


_TOO_MANY = {"posthog": {"type": "rate_limited", "detail": "Rate limit exceeded"},
             "segment": {"error": "Too Many Requests"},
             "mailchimp": {"title": "Too Many Requests", "status": 429, "detail": "slow down"},
             "gcal": {"error": {"code": 429, "message": "Rate Limit Exceeded"}}}


class DestinationStandIns(WsgiStandIn):
    """The four APIs on one server (`url`); resources pointing at it: `resources()`.
    `record(provider, summary)` is called for each write accepted (the demo's outbox)."""

    def __init__(self, fault: Callable[[], str | None] | None = None,
                 record: Callable[[str, dict], None] | None = None, port: int = 0):
        self.fault, self.record = fault or (lambda: None), record
        self.lock = threading.Lock()
        self.posthog: dict[str, dict] = {}           # uuid -> event
        self.segment: dict[str, tuple[str, dict]] = {}  # messageId -> (call, body)
        self.members: dict[str, dict] = {}           # subscriber hash -> member
        self.calendar: dict[str, dict] = {}          # event id -> event (status confirmed | cancelled)
        self.inserts: Counter = Counter()            # event id -> successful inserts
        self.requests: Counter = Counter()           # provider -> requests
        self.faults: Counter = Counter()             # "provider fault" -> count
        self.bad_requests: list[str] = []
        self._serve(port, "destination-standins")

    def resources(self) -> dict[str, dict]:
        """The f/dodo/<name> resources (by name) that send here."""
        return {"posthog": {"api_key": POSTHOG_KEY, "host": self.url},
                "segment": {"write_key": SEGMENT_KEY, "base_url": self.url},
                "mailchimp": {"api_key": MAILCHIMP_KEY, "list_id": MAILCHIMP_LIST, "base_url": self.url},
                "gcal": {"token": GCAL_TOKEN, "calendar_id": "primary", "base_url": self.url}}

    def handle(self, req: Request) -> Response:
        path = req.path
        provider, handler = (("posthog", self._posthog) if path in ("/i/v0/e/", "/capture/") else
                             ("segment", self._segment) if path.startswith("/v1/") else
                             ("mailchimp", self._mailchimp) if path.startswith("/3.0/") else
                             ("gcal", self._gcal) if path.startswith("/calendar/v3/") else (None, None))
        if provider is None:
            return self._refuse(req, "no such route")
        with self.lock:
            self.requests[provider] += 1
        fault = self.fault()
        if fault in ("429", "5xx", "drop"):
            self._count(provider, fault)
            if fault == "drop":
                return self._drop(req)
            return (json_response(429, _TOO_MANY[provider], {"Retry-After": "1"}) if fault == "429"
                    else json_response(503, {"error": "service unavailable"}))
        try:
            resp = handler(req)
        except AssertionError as exc:  # a request the provider would refuse
            return self._refuse(req, f"{provider}: {str(exc)[:200]}")
        if fault in ("5xx-after", "drop-after") and resp.status_code < 300:
            self._count(provider, fault)
            return self._drop(req) if fault == "drop-after" else json_response(500, {"error": "internal error"})
        return resp

    def _count(self, provider: str, fault: str) -> None:
        with self.lock:
            self.faults[f"{provider} {fault}"] += 1

    @staticmethod
    def _drop(req: Request) -> Response:
        """Close the connection without an answer (the client sees it dropped)."""
        sock = req.environ.get("werkzeug.socket")
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return Response(b"", status=500)

    def _refuse(self, req: Request, problem: str) -> Response:
        with self.lock:
            self.bad_requests.append(f"{req.method} {req.path}: {problem}")
        return json_response(400, {"message": problem})

    def _note(self, provider: str, summary: dict) -> None:
        if self.record is not None:
            self.record(provider, summary)

    def _posthog(self, req: Request) -> Response:
        body = posthog_capture(req, POSTHOG_KEY)
        with self.lock:
            new = body["uuid"] not in self.posthog
            self.posthog.setdefault(body["uuid"], body)
        if new:
            props = body.get("properties", {})
            self._note("posthog", {"event": body["event"], "distinct_id": body["distinct_id"],
                                   **{k: props[k] for k in ("revenue", "amount", "mrr", "currency") if k in props}})
        return json_response(200, {"status": "Ok"})

    def _segment(self, req: Request) -> Response:
        call, body = segment_call(req, SEGMENT_KEY)
        with self.lock:
            new = body["messageId"] not in self.segment
            self.segment.setdefault(body["messageId"], (call, body))
        if new:
            self._note("segment", {"call": call, "userId": body.get("userId"),
                                   **({"event": body["event"]} if call == "track" else {"traits": body["traits"]})})
        return json_response(200, {"success": True})

    def _mailchimp(self, req: Request) -> Response:
        kind, member_hash, body = mailchimp_call(req, MAILCHIMP_KEY, MAILCHIMP_LIST)
        with self.lock:
            member = self.members.get(member_hash)
            if kind == "PUT":
                if member is None:
                    member = self.members[member_hash] = {"email_address": body["email_address"],
                                                          "status": body["status_if_new"], "tags": set()}
                member["merge_fields"] = body.get("merge_fields", {})
            elif member is None:
                return json_response(404, {"title": "Resource Not Found", "status": 404,
                                   "detail": "The requested resource could not be found."})
            else:
                for tag in body["tags"]:
                    (member["tags"].add if tag["status"] == "active" else member["tags"].discard)(tag["name"])
            email, tags = member["email_address"], sorted(member["tags"])
        if kind == "TAGS":
            self._note("mailchimp", {"member": email, "tags": tags})
            return Response(status=204)
        return json_response(200, {"id": member_hash, "email_address": email, "status": member["status"]})

    def _gcal(self, req: Request) -> Response:
        method, eid, body = gcal_call(req, GCAL_TOKEN)
        with self.lock:
            have = self.calendar.get(eid)
            if method == "POST":
                if have is not None:
                    return json_response(409, {"error": {"code": 409, "message": "The requested identifier already exists."}})
                self.calendar[eid] = dict(body, id=eid, status=body.get("status", "confirmed"))
                self.inserts[eid] += 1
            elif method == "PUT":
                if have is None:
                    return json_response(404, {"error": {"code": 404, "message": "Not Found"}})
                self.calendar[eid] = dict(body, id=eid, status=body.get("status", "confirmed"))
            else:
                if have is None or have["status"] == "cancelled":
                    status = 404 if have is None else 410
                    return json_response(status, {"error": {"code": status, "message": "Not Found" if have is None
                                                    else "Resource has been deleted"}})
                have["status"] = "cancelled"
        if method == "DELETE":
            self._note("gcal", {"deleted": eid, "summary": have.get("summary")})
            return Response(status=204)
        self._note("gcal", {"event": eid, "summary": body["summary"], "date": body["start"].get("date")})
        return json_response(200, dict(self.calendar[eid]))

    def live_events(self) -> dict[str, dict]:
        with self.lock:
            return {k: v for k, v in self.calendar.items() if v["status"] != "cancelled"}
