"""HubSpot client and CRM sync against a pytest-httpserver stand-in of HubSpot's v3 API.

The stand-in keeps real state (contacts by email, notes by dodo_event_id, associations)
and checks each request's method, path, headers and body against HubSpot's documented
shapes, so "exactly one upsert applied" is counted on the server side.
"""

import json
import re
import uuid

import pytest
from werkzeug import Response

from f.dodo.lib import crm
from f.dodo.lib.hubspot import CONTACT_PROPERTIES, NOTE_PROPERTIES, HubSpot, HubSpotError, setup

TOKEN = "pat-na1-test-token"


def _json(status, body, headers=None):
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")


def rate_limited(policy: str) -> Response:
    """HubSpot's 429 (developers.hubspot.com, API usage guidelines): no Retry-After; the body
    names the policy; the rate-limit headers ride along (X-HubSpot-RateLimit-*)."""
    message = {"DAILY": "You have reached your daily limit.",
               "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit."}[policy]
    headers = {"X-HubSpot-RateLimit-Daily": "250000", "X-HubSpot-RateLimit-Daily-Remaining": "0"} \
        if policy == "DAILY" else {"X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
                                   "X-HubSpot-RateLimit-Max": "100", "X-HubSpot-RateLimit-Remaining": "0"}
    return _json(429, {"status": "error", "message": message, "errorType": "RATE_LIMIT",
                       "correlationId": str(uuid.uuid4()), "policyName": policy}, headers)


class HubSpotStandIn:
    """Contacts by email (batch upsert on the unique `email`), notes by id (create with an
    inline association; search by a property), note -> contact associations.

    Notes have no unique-value property in HubSpot: a note property created with
    `hasUniqueValue` is refused (400) and notes cannot be upserted by `idProperty`."""

    def __init__(self, server):
        self.records = {"contacts": {}, "notes": {}}  # contacts: email -> record; notes: dodo_event_id -> record
        self.notes_created: list[str] = []  # dodo_event_id of every note created (duplicates stay visible)
        self.searches = 0
        self.associations = set()
        self.properties = {"contacts": set(), "notes": set()}
        self.groups = set()
        self.applied = 0
        self.fail_next: list[Response] = []  # served before any upsert is applied
        self.lose_next_note_response = False  # create the note, then answer 502
        self.errors: list[str] = []
        server.expect_request("/crm/v3/objects/contacts/batch/upsert",
                              method="POST").respond_with_handler(self.upsert)
        server.expect_request("/crm/v3/objects/notes", method="POST").respond_with_handler(self.create_note)
        server.expect_request("/crm/v3/objects/notes/search", method="POST").respond_with_handler(self.search)
        server.expect_request(re.compile(r"^/crm/v3/properties/(contacts|notes)(/groups)?$"),
                              method="POST").respond_with_handler(self.create_property)

    def check_auth(self, request, json_body=True):
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        if json_body:
            assert request.headers["Content-Type"].startswith("application/json")

    def upsert(self, request):
        self.check_auth(request)
        if self.fail_next:
            return self.fail_next.pop(0)
        body = request.get_json()
        assert set(body) == {"inputs"} and len(body["inputs"]) == 1
        item = body["inputs"][0]
        assert set(item) == {"idProperty", "id", "properties"}
        assert all(isinstance(v, str) for v in item["properties"].values()), item["properties"]
        assert item["idProperty"] == "email" and item["properties"]["email"] == item["id"]
        store = self.records["contacts"]
        new = item["id"] not in store
        record = store.setdefault(item["id"], {"id": str(100 + len(store)), "properties": {}})
        record["properties"].update(item["properties"])
        self.applied += 1
        return _json(200, {"status": "COMPLETE", "results": [{
            "id": record["id"], "new": new, "properties": record["properties"],
            "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z", "archived": False}],
            "startedAt": "2026-01-01T00:00:00Z", "completedAt": "2026-01-01T00:00:00Z"})

    def create_note(self, request):
        """POST /crm/v3/objects/notes (SimplePublicObjectInputForCreate: properties, associations)."""
        self.check_auth(request)
        if self.fail_next:
            return self.fail_next.pop(0)
        body = request.get_json()
        assert set(body) == {"properties", "associations"}
        props = body["properties"]
        assert all(isinstance(v, str) for v in props.values()), props
        assert {"hs_timestamp", "hs_note_body", "dodo_event_id"} <= set(props) and props["hs_timestamp"].isdigit()
        (assoc,) = body["associations"]
        assert assoc["types"] == [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}]
        contact_id = assoc["to"]["id"]
        assert contact_id in {r["id"] for r in self.records["contacts"].values()}
        note_id = str(500 + len(self.notes_created))
        self.notes_created.append(props["dodo_event_id"])
        self.records["notes"].setdefault(props["dodo_event_id"], {"id": note_id, "properties": props})
        self.associations.add((note_id, contact_id))
        self.applied += 1
        if self.lose_next_note_response:
            self.lose_next_note_response = False
            return _json(502, {"status": "error", "message": "Bad gateway"})
        return _json(201, {"id": note_id, "properties": props, "createdAt": "2026-01-01T00:00:00Z",
                           "updatedAt": "2026-01-01T00:00:00Z", "archived": False})

    def search(self, request):
        """POST /crm/v3/objects/notes/search (PublicObjectSearchRequest)."""
        self.check_auth(request)
        body = request.get_json()
        assert set(body) <= {"filterGroups", "properties", "limit", "after", "sorts", "query"}
        ((flt,),) = [g["filters"] for g in body["filterGroups"]]
        assert flt["propertyName"] == "dodo_event_id" and flt["operator"] == "EQ"
        self.searches += 1
        hits = [{"id": r["id"], "properties": {"dodo_event_id": r["properties"]["dodo_event_id"]}}
                for r in self.records["notes"].values() if r["properties"]["dodo_event_id"] == flt["value"]]
        return _json(200, {"total": len(hits), "results": hits[: body.get("limit", 10)]})

    def create_property(self, request):
        self.check_auth(request)
        object_type = request.path.split("/")[4]
        body = request.get_json()
        if request.path.endswith("/groups"):
            assert {"name", "label"} <= set(body)
            key, seen = (object_type, body["name"]), self.groups
        else:
            assert {"name", "label", "type", "fieldType", "groupName"} <= set(body)
            for option in body.get("options", []):  # OptionInput: label, value, hidden required
                assert {"label", "value", "hidden"} <= set(option) and isinstance(option["hidden"], bool), option
            if object_type == "notes" and body.get("hasUniqueValue"):
                return _json(400, {"status": "error", "category": "VALIDATION_ERROR",
                                   "correlationId": str(uuid.uuid4()),
                                   "message": "Unique value properties are not supported for notes"})
            key, seen = body["name"], self.properties[object_type]
        if key in seen:
            return _json(409, {"status": "error", "message": "Property already exists",
                               "category": "OBJECT_ALREADY_EXISTS"})
        seen.add(key)
        return _json(201, body)


@pytest.fixture
def hub(httpserver):
    return HubSpotStandIn(httpserver)


@pytest.fixture
def client(httpserver, sleeps):
    c = HubSpot(TOKEN, httpserver.url_for(""), sleep=sleeps.append)
    yield c
    c.close()


def payment(**over):
    event = {"event_type": "payment.succeeded", "category": "payment", "webhook_id": "msg_1",
             "occurred_at": "2026-01-02T03:04:05.123456Z", "customer_id": "cus_1",
             "customer_email": "ada@example.com", "customer_name": "Ada Lovelace",
             "amount": "12.34", "amount_minor": 1234, "currency": "USD", "status": "succeeded",
             "entity_id": "pay_1", "payment_id": "pay_1", "data": {}}
    return event | over


def test_ten_secondly_429_waits_out_the_window_then_applies_one_upsert(hub, client, sleeps):
    hub.fail_next = [rate_limited("TEN_SECONDLY_ROLLING")]
    result = crm.sync_event(client, payment(category="license_key"))
    assert result["status"] == "synced"
    assert hub.applied == 1 and len(hub.records["contacts"]) == 1
    assert sleeps == [10.0]  # the whole rolling window, from X-HubSpot-RateLimit-Interval-Milliseconds


def test_daily_429_fails_at_once_with_a_clear_message(hub, client, sleeps, httpserver):
    hub.fail_next = [rate_limited("DAILY")]
    with pytest.raises(HubSpotError, match=r"daily API limit is used up.*midnight.*replay") as info:
        client.upsert("contacts", "email", "ada@example.com", {"email": "ada@example.com"})
    assert info.value.status == 429 and info.value.category == "RATE_LIMIT"
    assert sleeps == [] and len(httpserver.log) == 1 and hub.applied == 0


def test_500_three_times_then_200_applies_one_upsert_with_backoff(hub, client, sleeps):
    hub.fail_next = [_json(500, {"message": "internal"}) for _ in range(3)]
    record = client.upsert("contacts", "email", "ada@example.com", {"email": "ada@example.com"})
    assert record["id"] == "100"
    assert hub.applied == 1 and list(hub.records["contacts"]) == ["ada@example.com"]
    assert sleeps == [0.5, 1.0, 2.0]


def test_4xx_raises_with_hubspots_message_and_no_retry(hub, client, sleeps, httpserver):
    hub.fail_next = [_json(400, {"status": "error", "message": "Property values were not valid",
                                 "category": "VALIDATION_ERROR"})]
    with pytest.raises(HubSpotError, match="Property values were not valid") as info:
        client.upsert("contacts", "email", "ada@example.com", {"email": "ada@example.com"})
    assert info.value.status == 400 and info.value.category == "VALIDATION_ERROR"
    assert sleeps == [] and len(httpserver.log) == 1 and hub.applied == 0


def test_down_for_the_whole_window_raises(hub, client, sleeps):
    hub.fail_next = [_json(503, {"message": "down"}) for _ in range(5)]
    with pytest.raises(HubSpotError, match="503"):
        client.upsert("contacts", "email", "ada@example.com", {"email": "ada@example.com"})
    assert hub.applied == 0 and len(sleeps) == 4


def test_replayed_payment_leaves_one_contact_and_one_note(hub, client):
    first = crm.sync_event(client, payment())
    again = crm.sync_event(client, payment())  # no ledger: it searches before creating
    assert again == first | {"note": "found"}
    assert len(hub.records["contacts"]) == 1 and hub.notes_created == ["msg_1"]
    assert hub.associations == {(first["note_id"], first["contact_id"])}
    props = hub.records["contacts"]["ada@example.com"]["properties"]
    assert props["dodo_lifecycle"] == "customer" and props["dodo_last_payment_amount"] == "12.34"
    assert props["dodo_last_payment_date"] == "1767323045123"
    assert props["firstname"] == "Ada" and props["lastname"] == "Lovelace"


@pytest.fixture
def ledger_conn(pg_url):
    from f.dodo.lib import db

    schema = f"crm_{uuid.uuid4().hex[:8]}"
    with db.connect(pg_url, schema, migrate=True) as conn:
        yield conn
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_note_created_but_its_answer_lost_is_found_not_created_again(hub, client, ledger_conn):
    """HubSpot created the note, then the answer was lost (a 502). The create is not resent
    inside the call; the step's retry (attempt 2 in the ledger) searches and finds it."""
    from f.dodo.lib import ledger

    hub.lose_next_note_response = True
    with pytest.raises(crm.SyncError, match="HubSpot 502"):
        crm.sync(ledger_conn, payment(), client)
    assert hub.notes_created == ["msg_1"] and hub.searches == 0  # a first attempt never searches
    result = crm.sync(ledger_conn, payment(), client)  # Windmill's retry of the step
    assert result["status"] == "sent" and result["attempts"] == 2
    assert hub.notes_created == ["msg_1"] and hub.searches == 1
    (row,) = ledger.rows(ledger_conn, "msg_1")
    assert row["status"] == "sent"
    detail = ledger_conn.execute("SELECT detail FROM delivery_ledger WHERE webhook_id = 'msg_1'").fetchone()[0]
    assert detail["note_id"] == hub.records["notes"]["msg_1"]["id"]  # the note id, kept in the ledger
    assert crm.sync(ledger_conn, payment(), client)["replayed"] is True
    assert hub.notes_created == ["msg_1"] and hub.searches == 1


def test_note_body_escapes_customer_text(hub, client):
    evil = '<script>alert(1)</script>'
    crm.sync_event(client, payment(event_type="dispute.opened", category="dispute", entity_id="dp_1",
                                   data={"remarks": evil, "reason": "<b>fraud</b>"}))
    body = hub.records["notes"]["msg_1"]["properties"]["hs_note_body"]
    assert "<script>" not in body and "&lt;script&gt;" in body and "&lt;b&gt;fraud" in body
    assert hub.records["contacts"]["ada@example.com"]["properties"]["dodo_open_dispute"] == "true"


def test_kwd_and_jpy_amounts_keep_their_true_decimals():
    assert crm.contact_properties(payment(amount_minor=1234, currency="KWD"))["dodo_last_payment_amount"] == "1.234"
    assert crm.contact_properties(payment(amount_minor=1000, currency="JPY"))["dodo_last_payment_amount"] == "1000"


@pytest.mark.parametrize("interval,count,amount,expected", [
    ("Month", 1, 1999, "19.99"), ("Year", 1, 12000, "10.00"), ("Month", 3, 3000, "10.00"),
    ("Week", 1, 1000, "43.33")])
def test_subscription_mrr(interval, count, amount, expected):
    event = payment(event_type="subscription.active", category="subscription", product_id="prod_1",
                    data={"status": "active", "recurring_pre_tax_amount": amount, "currency": "USD",
                          "payment_frequency_interval": interval, "payment_frequency_count": count})
    props = crm.contact_properties(event)
    assert props["dodo_mrr"] == expected and props["dodo_lifecycle"] == "customer"
    assert props["dodo_product_id"] == "prod_1"
    assert "dodo_lifetime_value" not in props  # needs the history: only from Postgres


def test_cancelled_subscription_churns():
    event = payment(event_type="subscription.cancelled", category="subscription",
                    data={"status": "cancelled"})
    props = crm.contact_properties(event)
    assert props["dodo_lifecycle"] == "churned" and props["dodo_mrr"] == "0"
    assert props["dodo_subscription_status"] == "cancelled"


def test_event_without_email_is_skipped_without_calls(hub, client, httpserver):
    assert crm.sync_event(client, payment(customer_email=None))["status"] == "skipped"
    assert len(httpserver.log) == 0


def test_setup_creates_then_finds_existing(hub, client):
    """The stand-in refuses a unique-value note property and an option without `hidden`."""
    first = setup(client)
    assert len(first["created"]) == 2 + len(CONTACT_PROPERTIES) + len(NOTE_PROPERTIES)
    assert hub.properties["notes"] == {"dodo_event_id"}
    second = setup(client)
    assert second["created"] == [] and len(second["existing"]) == len(CONTACT_PROPERTIES) + len(NOTE_PROPERTIES)


# --- Entry scripts ------------------------------------------------------------------


def test_sync_contact_entry_script_once_per_delivery(hub, httpserver, monkeypatch, pg_url):
    import uuid

    from f.dodo.crm import sync_contact
    from f.dodo.lib import db

    monkeypatch.setenv("DODO_HUBSPOT_API_URL", httpserver.url_for(""))
    schema = f"crm_{uuid.uuid4().hex[:8]}"
    db.connect(pg_url, schema, migrate=True).close()  # the owner's step (f/dodo/migrate)
    ev = payment(webhook_id=f"msg_{schema}")
    first = sync_contact.main(ev, {"token": TOKEN}, db.dsn_to_resource(pg_url), schema)
    again = sync_contact.main(ev, {"token": TOKEN}, db.dsn_to_resource(pg_url), schema)
    assert first["status"] == "sent" and first["external_id"] == "100"
    assert again["replayed"] is True and hub.applied == 2  # contact + note, once
    props = hub.records["contacts"]["ada@example.com"]["properties"]
    # The event was never recorded: Postgres knows no payment, so no payment state.
    assert props["dodo_open_dispute"] == "false" and "dodo_lifecycle" not in props
    with db.connect(pg_url, schema) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_sync_contact_without_credentials_writes_the_outbox(tmp_path, monkeypatch):
    from f.dodo.crm import sync_contact

    monkeypatch.setenv("DODO_OUTBOX", str(tmp_path / "outbox.jsonl"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    result = sync_contact.main(payment())
    assert result["status"] == "skipped" and result["external_id"].startswith("outbox:")
    (line,) = [json.loads(x) for x in (tmp_path / "outbox.jsonl").read_text().splitlines()]
    assert line["kind"] == "hubspot" and line["contact"]["email"] == "ada@example.com"
    assert line["note"]["dodo_event_id"] == "msg_1"


# --- One connection pool per process ------------------------------------------------


def test_steps_share_one_http_client_and_each_request_carries_its_own_token(hub, httpserver, monkeypatch, pg_url):
    """sync_contact builds a HubSpot per step: the pool (and its TLS context, ~23 ms of CPU
    to build) is built once per process, whatever the token or base URL."""
    from f.dodo.crm import sync_contact
    from f.dodo.lib import db, hubspot

    built = []

    class Counted(hubspot.http.Client):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(hubspot.http, "_shared", {})
    monkeypatch.setattr(hubspot.http, "Client", Counted)
    monkeypatch.setenv("DODO_HUBSPOT_API_URL", httpserver.url_for(""))
    httpserver.expect_request("/crm/v3/objects/deals/7", method="GET").respond_with_json({"id": "7"})
    schema = f"crm_{uuid.uuid4().hex[:8]}"
    db.connect(pg_url, schema, migrate=True).close()  # the owner's step (f/dodo/migrate)
    for n in range(3):
        result = sync_contact.main(payment(webhook_id=f"msg_{schema}_{n}"), {"token": TOKEN},
                                   db.dsn_to_resource(pg_url), schema)
        assert result["status"] == "sent"
    other = HubSpot("pat-eu1-other-token", httpserver.url_for("/").rstrip("/"))
    assert other.call("GET", "/crm/v3/objects/deals/7") == {"id": "7"}
    assert built == [1]
    assert hub.applied == 6 and len(hub.associations) == 3  # contact + note per step, each once
    tokens = {req.path: req.headers["Authorization"] for req, _ in httpserver.log}
    assert tokens["/crm/v3/objects/deals/7"] == "Bearer pat-eu1-other-token"
    assert tokens["/crm/v3/objects/contacts/batch/upsert"] == f"Bearer {TOKEN}"
    with db.connect(pg_url, schema) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
