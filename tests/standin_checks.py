"""Request checks shared by the HTTP stand-ins: method, path, auth and body shape as each
provider documents them. A failed check raises AssertionError inside the handler;
pytest-httpserver answers 500 and records it, and tests/conftest.py's `httpserver`
fixture fails the test with it (a client retrying the 500, or code absorbing it, would
otherwise hide a malformed request).
"""
from __future__ import annotations

import re

HUBSPOT_UPSERT = re.compile(r"^/crm/v3/objects/(contacts|notes)/batch/upsert$")
BLOCK_TYPES = {"section", "context", "header", "divider", "image", "actions", "rich_text"}


def slack_post_message(request, token: str, channel: str | None = None) -> dict:
    """Slack chat.postMessage (api.slack.com/methods/chat.postMessage): POST, bot token as
    Bearer, a JSON body with `channel` and `text` or Block Kit `blocks`, nothing else (as
    tests/provider_standins.py's SlackApi, which also applies Slack's block limits).
    Returns the body."""
    assert request.method == "POST" and request.path.endswith("/chat.postMessage"), request.path
    assert request.headers.get("Authorization") == f"Bearer {token}"
    assert request.headers.get("Content-Type") == "application/json; charset=utf-8"
    body = request.get_json()
    assert isinstance(body, dict) and set(body) <= {"channel", "text", "blocks"}, body
    assert isinstance(body.get("channel"), str) and (channel is None or body["channel"] == channel), body
    assert body.get("text") or body.get("blocks"), body
    assert isinstance(body.get("text", ""), str)
    assert isinstance(body.get("blocks", []), list) and all(
        isinstance(b, dict) and b.get("type") in BLOCK_TYPES for b in body.get("blocks", [])), body.get("blocks")
    return body


SLACK_ID = re.compile(r"^[CGD][A-Z0-9]{8,}$")


def slack_get_upload_url(request, token: str) -> dict:
    """Slack files.getUploadURLExternal (docs.slack.dev/reference/methods/files.getUploadURLExternal):
    POST, bot token as Bearer, a form with `filename` and `length` (bytes, > 0), optional
    `alt_txt` / `snippet_type`. Returns the form."""
    assert request.method == "POST" and request.path.endswith("/files.getUploadURLExternal"), request.path
    assert request.headers.get("Authorization") == f"Bearer {token}"
    assert request.headers.get("Content-Type") == "application/x-www-form-urlencoded"
    form = request.form.to_dict()
    assert {"filename", "length"} <= set(form) <= {"filename", "length", "alt_txt", "snippet_type"}, form
    assert form["filename"] and form["length"].isdigit() and int(form["length"]) > 0, form
    return form


def slack_upload(request, length: int) -> bytes:
    """The POST of the file's bytes to the returned upload_url: pre-signed, so no token is
    sent; exactly the `length` announced. Returns the bytes."""
    assert request.method == "POST", request.method
    assert "Authorization" not in request.headers, "the upload URL is pre-signed: no token"
    data = request.get_data()
    assert len(data) == length, (len(data), length)
    return data


def slack_complete_upload(request, token: str, file_id: str) -> dict:
    """Slack files.completeUploadExternal (docs.slack.dev/reference/methods/files.completeUploadExternal):
    POST, bot token as Bearer, JSON with `files` = [{id, title}] and the channel's ID as
    `channel_id` (an ID, not a #name). Returns the body."""
    assert request.method == "POST" and request.path.endswith("/files.completeUploadExternal"), request.path
    assert request.headers.get("Authorization") == f"Bearer {token}"
    assert request.headers.get("Content-Type") == "application/json; charset=utf-8"
    body = request.get_json()
    allowed = {"files", "channel_id", "thread_ts", "channels", "initial_comment", "blocks"}
    assert isinstance(body, dict) and "files" in body and set(body) <= allowed, body
    assert len(body["files"]) == 1 and set(body["files"][0]) <= {"id", "title"}, body["files"]
    assert body["files"][0]["id"] == file_id, body["files"]
    assert SLACK_ID.match(body.get("channel_id") or ""), body.get("channel_id")
    return body


def hubspot_upsert(request, token: str) -> tuple[str, dict]:
    """HubSpot CRM v3 batch upsert (developers.hubspot.com, objects/{type}/batch/upsert): POST,
    private-app token as Bearer, `{"inputs": [{"idProperty", "id", "properties"}]}` with
    string property values. Returns the object type and the one input."""
    match = HUBSPOT_UPSERT.match(request.path)
    assert request.method == "POST" and match, f"{request.method} {request.path}"
    assert request.headers.get("Authorization") == f"Bearer {token}"
    assert request.headers.get("Content-Type", "").startswith("application/json")
    body = request.get_json()
    assert isinstance(body, dict) and set(body) == {"inputs"} and len(body["inputs"]) == 1, body
    (item,) = body["inputs"]
    assert set(item) == {"idProperty", "id", "properties"}, item
    assert all(isinstance(v, str) for v in item["properties"].values()), item["properties"]
    id_property = {"contacts": "email", "notes": "dodo_event_id"}[match.group(1)]
    assert item["idProperty"] == id_property and item["id"] == item["properties"].get(id_property, item["id"])
    return match.group(1), item


def twilio_message(request, account_sid: str, token: str) -> dict:
    """Twilio's Messages resource (twilio.com/docs/messaging/api/message-resource): POST to
    /2010-04-01/Accounts/{sid}/Messages.json, HTTP basic auth (sid, token), a form with To,
    Body and one of From / MessagingServiceSid. Returns the form."""
    assert request.method == "POST", request.method
    assert request.path.endswith(f"/2010-04-01/Accounts/{account_sid}/Messages.json"), request.path
    auth = request.authorization
    assert auth is not None and auth.type == "basic" and (auth.username, auth.password) == (account_sid, token)
    assert request.headers.get("Content-Type") == "application/x-www-form-urlencoded"
    form = request.form.to_dict()
    assert set(form) <= {"To", "From", "MessagingServiceSid", "Body"} and form.get("To") and form.get("Body"), form
    assert bool(form.get("From")) != bool(form.get("MessagingServiceSid")), form
    return form


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
    import hashlib  # noqa: PLC0415

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
