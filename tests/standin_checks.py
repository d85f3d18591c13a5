"""Request checks shared by the HTTP stand-ins: method, path, auth and body shape as each
provider documents them. A failed check raises AssertionError inside the handler;
pytest-httpserver answers 500 and records it, and tests/conftest.py's `httpserver`
fixture fails the test with it (a client retrying the 500, or code absorbing it, would
otherwise hide a malformed request).
"""
from __future__ import annotations

import re

# PostHog, Segment, Mailchimp and Google Calendar: their checks live beside the stand-ins
# the demo and the soak also use (local_runner/destination_standins.py).
from local_runner.destination_standins import (GCAL_EVENTS, GCAL_ID, MAILCHIMP_MEMBER,  # noqa: F401
                                               gcal_call, mailchimp_call, posthog_capture, segment_call)

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
