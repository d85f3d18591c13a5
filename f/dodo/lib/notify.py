"""Fan one normalised event out to its routed channels, once per channel.

Routing picks the rule; render builds each channel's message; the ledger makes each
(webhook_id, "notify", channel) happen once. A channel without credentials writes to
the local outbox and is recorded `skipped`. Failures, and channels another worker is
still sending (in_progress), are collected, then raised together, so one step retry
re-sends only what is not done.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field

from f.dodo.lib import channels, ledger, render
from f.dodo.lib.routing import Routing, Rule

SINK = "notify"
IN_PROGRESS = "in progress in another worker (its lease is live); retry later"


class NotifyError(RuntimeError):
    """At least one channel failed or is still being sent by another worker (in_progress);
    the others were delivered or skipped and recorded. The step fails: its retry sends
    only what is not done."""


@dataclass
class Transports:
    """Configured credentials (None = not configured) and injectable endpoints."""
    slack: dict | None = None
    slack_webhook_url: str | None = None
    smtp: dict | None = None
    twilio: dict | None = None
    slack_api: str = channels.SLACK_API
    twilio_api: str = channels.TWILIO_API
    sleep: object = field(default=time.sleep)


def delivery_key(event: dict) -> str:
    """The webhook-id, or the event's own identity for events pasted in the UI."""
    return event.get("webhook_id") or f"{event.get('event_type')}:{event.get('entity_id')}"


def plan(event: dict, routing: Routing) -> list[tuple[str, Rule]]:
    """(ledger channel, rule) pairs this event should reach; SMS is one per recipient."""
    rule = routing.route(str(event.get("event_type") or ""))
    if rule is None or rule.mode == "off":
        return []
    if rule.mode == "digest":
        return [("digest", rule)]
    out = []
    for ch in rule.channels:
        if ch == "sms":
            out += [(f"sms:{to}", rule) for to in (rule.sms_to if rule.sms_to is not None else routing.sms_to)]
        else:
            out.append((ch, rule))
    return out


def _sender(channel: str, rule: Rule, event: dict, routing: Routing, t: Transports):
    """A zero-argument send for one channel: real when configured, else the outbox.
    Rendering happens inside it, so a replay of a delivered channel renders nothing."""
    kw = {"urgency": rule.urgency, "title": rule.title or render.DEFAULT_TITLE,
          "summary": rule.summary or render.DEFAULT_SUMMARY}
    key = delivery_key(event)
    if channel == "slack":
        target = rule.slack_channel or routing.slack_channel
        if (t.slack and t.slack.get("token")) or t.slack_webhook_url:
            return lambda: channels.send_slack(render.slack_message(event, **kw), token=(t.slack or {}).get("token"),
                                               channel=target, webhook_url=t.slack_webhook_url,
                                               api_url=t.slack_api, sleep=t.sleep)
        return lambda: _outbox("slack", key, {"channel": target, **render.slack_message(event, **kw)})
    if channel == "email":
        to = rule.email_to if rule.email_to is not None else routing.email_to
        if not to:
            return lambda: {"status": "skipped", "external_id": "no recipients"}
        sender = routing.email_from or (t.smtp or {}).get("user") or "dodo-bundle@localhost"
        message_id = f"<{render.header_safe(key).replace(' ', '_').replace('>', '_')}@dodo-bundle>"
        if t.smtp and t.smtp.get("host"):
            return lambda: channels.send_email(t.smtp, sender=sender, to=to, message_id=message_id,
                                               **render.email_message(event, **kw))
        return lambda: _outbox("email", key, {"to": to, "from": sender, **render.email_message(event, **kw)})
    if channel.startswith("sms:"):
        to = channel[4:]
        if t.twilio and t.twilio.get("accountSid") and t.twilio.get("token"):
            return lambda: channels.send_sms(t.twilio, to=to, body=render.sms_message(event, **kw),
                                             api_url=t.twilio_api, sleep=t.sleep)
        return lambda: _outbox("sms", key, {"to": to, "body": render.sms_message(event, **kw)})
    raise ValueError(f"unknown channel {channel!r}")


def _outbox(kind: str, key: str, record: dict) -> dict:
    path = channels.to_outbox(kind, {"delivery": key, **record})
    return {"status": "skipped", "external_id": f"outbox:{path}"}


def notify(conn, event: dict, routing: Routing, transports: Transports) -> dict:
    """Deliver the event to each routed channel once; raise NotifyError if any failed or
    is in progress in another worker."""
    key, results = delivery_key(event), {}
    for channel, rule in plan(event, routing):
        if channel == "digest":
            detail = {"line": render.sms_message(event), "event_type": event.get("event_type")}
            if conn is None:
                results["digest"] = _outbox("digest", key, detail)
            else:
                queued = ledger.enqueue(conn, key, SINK, "digest", detail)
                results["digest"] = {"status": "pending" if queued else "already queued"}
            continue
        results[channel] = ledger.deliver_once(conn, key, SINK, channel,
                                               _sender(channel, rule, event, routing, transports))
    problems = {ch: r["error"] if r["status"] == "failed" else IN_PROGRESS
                for ch, r in results.items() if r["status"] in ("failed", "in_progress")}
    if problems:
        raise NotifyError("; ".join(f"{ch}: {why}" for ch, why in problems.items()))
    return {"delivery": key, "event_type": event.get("event_type"), "channels": results}


def send_digest(conn, routing: Routing, transports: Transports, *, limit: int = 500) -> dict:
    """Send the queued digest lines as one message (Slack or email), then mark them sent.

    Lines were rendered safe for SMS (no control characters); Slack gets them escaped.
    A failure leaves them pending for the next run.
    """
    rows = ledger.pending(conn, SINK, "digest", limit=limit)
    if not rows:
        return {"status": "empty", "events": 0}
    lines = [str((r["detail"] or {}).get("line", r["webhook_id"])) for r in rows]
    title, status = f"Dodo Payments daily digest: {len(lines)} events", "sent"
    if routing.digest_channel == "email" and transports.smtp and routing.email_to:
        text = "\n".join(lines)
        html_body = "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in lines) + "</ul>"
        external = channels.send_email(transports.smtp, sender=routing.email_from or transports.smtp.get("user")
                                       or "dodo-bundle@localhost", to=routing.email_to, subject=title,
                                       text=text, html=html_body,
                                       message_id=f"<digest-{rows[-1]['webhook_id']}@dodo-bundle>")
    else:
        body = "\n".join(f"• {render.slack_escape(x)}" for x in lines)[:2900]
        msg = {"text": title, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*\n{body}"}}]}
        if (transports.slack and transports.slack.get("token")) or transports.slack_webhook_url:
            external = channels.send_slack(msg, token=(transports.slack or {}).get("token"),
                                           channel=routing.slack_channel, webhook_url=transports.slack_webhook_url,
                                           api_url=transports.slack_api, sleep=transports.sleep)
        else:
            external, status = _outbox("digest", "digest", msg)["external_id"], "skipped"
    ledger.mark(conn, [r["webhook_id"] for r in rows], SINK, "digest", status, external)
    return {"status": status, "events": len(rows), "external_id": external}
