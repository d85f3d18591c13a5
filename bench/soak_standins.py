"""Recording stand-ins of HubSpot, Slack, Twilio (one werkzeug server) and SMTP (aiosmtpd)
for the soak, on loopback, with the faults the soak injects (the per-event destinations'
stand-ins, PostHog, Segment, Mailchimp and Google Calendar, are local_runner/destination_standins.py,
which the demo uses too; `Bursts` drives their faults as well).

Each counts what it received per delivery: the soak's routing puts `[<webhook-id>]` in
every message summary, and the bundle's e-mails carry `<webhook-id@dodo-bundle>` as
Message-ID. HubSpot keeps real state: contacts by email, notes by dodo_event_id (every
note created is counted: a second one for an event is a duplicate), note -> contact
associations, so the CRM's final content can be compared with the ground truth.
"""
from __future__ import annotations

import random
import re
import socket
import threading
import time
from collections import Counter
from email import message_from_bytes

from aiosmtpd.controller import Controller
from werkzeug import Request, Response

from local_runner.destination_standins import WsgiStandIn, json_response

ID = re.compile(r"\[(msg_[A-Za-z0-9_]+)\]")
MSG_ID = re.compile(r"<(msg_[A-Za-z0-9_]+)@dodo-bundle>")
# A failure alert (f/dodo/lib/alerting.py: the replay command names the delivery; the
# e-mail's Message-ID is its ledger key alert:<webhook-id>, ':' encoded as =3A)
ALERT = re.compile(r"replay --webhook-id (msg_[A-Za-z0-9_]+)")
ALERT_MSG_ID = re.compile(r"<alert=3A(msg_[A-Za-z0-9_]+)@dodo-bundle>")
HUBSPOT_TOKEN = "pat-soak-standin"
SLACK_TOKEN = "xoxb-soak-standin"
TWILIO_SID = "ACsoakstandin"
TWILIO_TOKEN = "soak-token"
SLACK_BLOCKS = {"section", "context", "header", "divider"}


class Bursts:
    """HubSpot trouble in bursts: for `burst_s` of every `period_s`, a request fails with
    probability `p`: half 429 (HubSpot's TEN_SECONDLY_ROLLING body and headers; the window
    this stand-in announces is 1 s, not HubSpot's 10 s, to keep the soak short), half 5xx; a third of the 5xx are sent after
    the write was applied (the response is lost, the write is not)."""

    def __init__(self, period_s: float, burst_s: float, p: float = 0.7, seed: int = 1, drops: bool = False):
        self.period_s, self.burst_s, self.p, self.drops = period_s, burst_s, p, drops
        self.rng = random.Random(seed)
        self.t0: float | None = None
        self.lock = threading.Lock()

    def start(self) -> None:
        self.t0 = time.monotonic()

    def stop(self) -> None:
        self.t0 = None

    def draw(self) -> str | None:
        """None (serve), "429", "5xx" or "5xx-after"; with `drops` also "drop" / "drop-after"
        (the connection closed without an answer, before or after the write)."""
        t0 = self.t0
        if t0 is None or (time.monotonic() - t0) % self.period_s >= self.burst_s:
            return None
        with self.lock:
            if self.rng.random() >= self.p:
                return None
            x = self.rng.random()
        if self.drops:
            return "429" if x < 0.4 else "5xx" if x < 0.6 else "5xx-after" if x < 0.7 else \
                "drop" if x < 0.9 else "drop-after"
        return "429" if x < 0.5 else ("5xx-after" if x < 0.66 else "5xx")


class HttpStandIns(WsgiStandIn):
    """HubSpot (/crm/...), Slack (/api/chat.postMessage) and Twilio (/2010-04-01/...)."""

    def __init__(self, bursts: Bursts | None = None, port: int = 0):
        self.bursts = bursts or Bursts(1, 0)
        self.lock = threading.Lock()
        self.contacts: dict[str, dict] = {}   # email -> {"id", "properties"}
        self.notes: dict[str, dict] = {}      # dodo_event_id -> {"id", "properties"}
        self.note_creates: Counter = Counter()  # dodo_event_id -> notes created
        self.associations: set[tuple[str, str]] = set()
        self.slack: Counter = Counter()       # webhook_id -> messages
        self.alerts: Counter = Counter()      # webhook_id -> failure alerts (Slack)
        self.sms: Counter = Counter()
        self.faults: Counter = Counter()      # "429", "5xx", "5xx-after"
        self.unattributed: list[str] = []
        self.bad_requests: list[str] = []
        self._ids = 1000
        self._serve(port)

    def handle(self, req: Request) -> Response:
        path = req.path
        if path.startswith("/crm/"):
            if req.headers.get("Authorization") != f"Bearer {HUBSPOT_TOKEN}":
                self._refuse(req, "auth")
                return json_response(401, {"status": "error", "message": "bad token"})
            fault = self.bursts.draw()
            if fault == "429":
                self._count(fault)
                return json_response(429, {"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                                   "errorType": "RATE_LIMIT", "correlationId": "00000000-0000-0000-0000-000000000000",
                                   "policyName": "TEN_SECONDLY_ROLLING"},
                             {"X-HubSpot-RateLimit-Interval-Milliseconds": "1000",
                              "X-HubSpot-RateLimit-Max": "100", "X-HubSpot-RateLimit-Remaining": "0"})
            if fault == "5xx":
                self._count(fault)
                return json_response(502, {"status": "error", "message": "Bad gateway"})
            resp = self.hubspot(req)
            if fault == "5xx-after" and resp.status_code < 300:
                self._count(fault)
                return json_response(500, {"status": "error", "message": "internal error"})
            return resp
        if path == "/api/chat.postMessage":
            problem = self._slack_problem(req)
            if problem:
                return self._refuse(req, problem)
            return self._attribute(self.slack, req.get_json()["text"], json_response(200, {"ok": True, "ts": "1.0"}))
        if path == f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json":
            problem = self._twilio_problem(req)
            if problem:
                return self._refuse(req, problem)
            return self._attribute(self.sms, req.form["Body"], json_response(201, {"sid": "SM" + "0" * 32}))
        return self._refuse(req, "no such route")

    def _refuse(self, req: Request, problem: str) -> Response:
        """A request the provider would refuse: counted (the soak fails on any) and answered 400."""
        with self.lock:
            self.bad_requests.append(f"{req.method} {req.path}: {problem}")
        return json_response(400, {"message": problem})

    @staticmethod
    def _slack_problem(req: Request) -> str | None:
        """chat.postMessage: POST, bot token as Bearer, JSON {channel, text, blocks}."""
        if req.method != "POST":
            return "method"
        if req.headers.get("Authorization") != f"Bearer {SLACK_TOKEN}":
            return "auth"
        if not req.headers.get("Content-Type", "").startswith("application/json"):
            return "content type"
        body = req.get_json(silent=True)
        if not isinstance(body, dict) or set(body) != {"channel", "text", "blocks"} or not body["channel"]:
            return "body shape"
        if not isinstance(body["text"], str) or not isinstance(body["blocks"], list) or not all(
                isinstance(b, dict) and b.get("type") in SLACK_BLOCKS for b in body["blocks"]):
            return "text or blocks"
        return None

    @staticmethod
    def _twilio_problem(req: Request) -> str | None:
        """Messages.json: POST, HTTP basic auth with the account SID and token, a form with
        To, Body and one of From / MessagingServiceSid (twilio.com/docs/messaging/api/message-resource)."""
        if req.method != "POST":
            return "method"
        auth = req.authorization
        if auth is None or auth.type != "basic" or (auth.username, auth.password) != (TWILIO_SID, TWILIO_TOKEN):
            return "auth"
        if not req.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            return "content type"
        form = req.form
        if not form.get("To", "").startswith("+") or not form.get("Body"):
            return "To or Body"
        if bool(form.get("From")) == bool(form.get("MessagingServiceSid")) or set(form) - {
                "To", "Body", "From", "MessagingServiceSid"}:
            return "sender or extra fields"
        return None

    def _count(self, fault: str) -> None:
        with self.lock:
            self.faults[fault] += 1

    def _attribute(self, counter: Counter, text: str, resp: Response) -> Response:
        alert, m = ALERT.search(text), ID.search(text)
        with self.lock:
            if alert:
                self.alerts[alert.group(1)] += 1
            elif m:
                counter[m.group(1)] += 1
            else:
                self.unattributed.append(text[:200])
        return resp

    def hubspot(self, req: Request) -> Response:
        parts = req.path.strip("/").split("/")
        if req.method == "POST" and parts[:3] == ["crm", "v3", "objects"] and parts[4:] == ["batch", "upsert"]:
            body = req.get_json(silent=True) if req.headers.get("Content-Type", "").startswith(
                "application/json") else None
            items = body.get("inputs") if isinstance(body, dict) and set(body) == {"inputs"} else None
            if (parts[3] not in ("contacts", "notes") or not isinstance(items, list) or len(items) != 1
                    or not isinstance(items[0], dict) or set(items[0]) != {"idProperty", "id", "properties"}):
                return self._refuse(req, "upsert body shape")
            (item,) = items
            store = {"contacts": self.contacts, "notes": self.notes}[parts[3]]
            with self.lock:
                if item["id"] not in store:
                    self._ids += 1
                    store[item["id"]] = {"id": str(self._ids), "properties": {}}
                rec = store[item["id"]]
                rec["properties"].update(item["properties"])
            return json_response(200, {"status": "COMPLETE", "results": [{"id": rec["id"], "properties": rec["properties"]}]})
        if req.method == "POST" and parts == ["crm", "v3", "objects", "notes"]:
            body = req.get_json()
            key = body["properties"]["dodo_event_id"]
            ((assoc,),) = [a["types"] for a in body["associations"]]
            with self.lock:
                self._ids += 1
                self.note_creates[key] += 1
                self.notes.setdefault(key, {"id": str(self._ids), "properties": body["properties"]})
                if assoc["associationTypeId"] == 202:
                    self.associations.add((self.notes[key]["id"], body["associations"][0]["to"]["id"]))
            return json_response(201, {"id": str(self._ids), "properties": body["properties"]})
        if req.method == "POST" and parts == ["crm", "v3", "objects", "notes", "search"]:
            (flt,) = req.get_json()["filterGroups"][0]["filters"]
            with self.lock:
                found = [self.notes[flt["value"]]] if flt["value"] in self.notes else []
            return json_response(200, {"total": len(found), "results": found})
        if req.method == "PUT" and parts[:3] == ["crm", "v4", "objects"] and parts[5:7] == ["associations", "default"]:
            with self.lock:
                self.associations.add((parts[4], parts[8]))
            return json_response(200, {"status": "COMPLETE", "results": []})
        return self._refuse(req, "unexpected HubSpot request")


class SmtpStandIn:
    """aiosmtpd on loopback; while `refusing`, every MAIL FROM gets 421."""

    def __init__(self, port: int = 0):
        self.received: Counter = Counter()
        self.alerts: Counter = Counter()  # webhook_id -> failure alerts
        self.refused = 0
        self.refusing = False
        self.unattributed: list[str] = []
        if not port:  # Controller needs a fixed port (it connects to check it is up)
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        self.port = port
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.refusing:
            self.refused += 1
            return "421 4.3.2 Service not available, try again later"
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.content)
        m, alert = MSG_ID.search(msg.get("Message-ID", "")), ALERT_MSG_ID.search(msg.get("Message-ID", ""))
        if alert:
            self.alerts[alert.group(1)] += 1
        elif m:
            self.received[m.group(1)] += 1
        else:
            self.unattributed.append(msg.get("Message-ID", ""))
        return "250 Message accepted"

    def close(self) -> None:
        self.controller.stop()
