"""Fan one normalised event out to its routed channels, once per channel.

Routing picks the rule; render builds each channel's message; the ledger makes each
(webhook_id, "notify", channel) happen once. A channel without credentials writes to
the local outbox and is recorded `skipped`. Failures, and channels another worker is
still sending (in_progress), are collected, then raised together, so one step retry
re-sends only what is not done.

Slack and SMS are at most once: a send whose outcome is unknown (a timeout or 5xx after
the request went out: neither API takes an idempotency key) is recorded `unknown`, not
resent, and reported: in the result's `unknown`, in the ledger row, and as a warning
line in the job's log. It does not fail the step (a retry could not resolve it); a
replay resends it only with `resend_unknown`.
"""

from __future__ import annotations

import time

from f.dodo.lib import channels, ledger, render
from f.dodo.lib.errors import OutcomeUnknown, mark_permanent
from f.dodo.lib.inert import html_escape
from f.dodo.lib.routing import Routing, Rule, check_slack_webhook

SINK = "notify"
IN_PROGRESS = "in progress in another worker (its lease is live); retry later"


class NotifyError(RuntimeError):
    """At least one channel failed or is still being sent by another worker (in_progress);
    the others were delivered or skipped and recorded. The step fails: its retry sends
    only what is not done."""


class Transports:
    """Configured credentials (None = not configured) and injectable endpoints. (A plain
    class: a dataclass would make the notify step import dataclasses and inspect.)"""

    def __init__(self, slack: dict | None = None, slack_webhook_url: str | None = None, smtp: dict | None = None,
                 twilio: dict | None = None, slack_api: str = channels.SLACK_API,
                 twilio_api: str = channels.TWILIO_API, sleep=time.sleep):
        self.slack, self.slack_webhook_url, self.smtp, self.twilio = slack, slack_webhook_url, smtp, twilio
        self.slack_api, self.twilio_api, self.sleep = slack_api, twilio_api, sleep


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
        message_id = channels.message_id(key)
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
    path = ledger.to_outbox(kind, {"delivery": key, **record})
    return {"status": "skipped", "external_id": f"outbox:{path}"}


def webhook_only(t: Transports) -> bool:
    """Slack through an incoming webhook (no bot token): it cannot choose a channel."""
    return bool(t.slack_webhook_url) and not (t.slack or {}).get("token")


def notify(conn, event: dict, routing: Routing, transports: Transports) -> dict:
    """Deliver the event to each routed channel once; raise NotifyError if any failed or
    is in progress in another worker. Unknown outcomes are reported, not raised."""
    if webhook_only(transports):
        check_slack_webhook(routing)
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
        error = NotifyError("; ".join(f"{ch}: {why}" for ch, why in problems.items()))
        # retried unless every failed channel failed for good (errors.RETRY_IF)
        raise mark_permanent(error) if all(results[ch].get("permanent") for ch in problems) else error
    out = {"delivery": key, "event_type": event.get("event_type"), "channels": results}
    return out | ledger.report_unknown(key, results)


def send_digest(conn, routing: Routing, transports: Transports, *, limit: int = 500) -> dict:
    """Send the queued digest lines (Slack or email), then mark the lines each message
    carried: sent, or unknown when a Slack post's outcome is unknown (never resent blindly).

    Lines were rendered safe for SMS (no control characters); Slack gets them escaped and
    packed into sections within Slack's limits, as many messages as they need, each
    marked on its own: a line is marked sent only once a message that holds it was sent.
    A failure leaves the remaining lines pending for the next run.
    """
    rows = ledger.pending(conn, SINK, "digest", limit=limit)
    if not rows:
        return {"status": "empty", "events": 0}
    lines = [str((r["detail"] or {}).get("line", r["webhook_id"])) for r in rows]
    title = f"Dodo Payments daily digest: {len(lines)} events"
    if routing.digest_channel == "email" and transports.smtp and routing.email_to:
        text = "\n".join(lines)
        html_body = "<ul>" + "".join(f"<li>{html_escape(x)}</li>" for x in lines) + "</ul>"
        sent = channels.send_email(transports.smtp, sender=routing.email_from or transports.smtp.get("user")
                                   or "dodo-bundle@localhost", to=routing.email_to, subject=title,
                                   text=text, html=html_body,
                                   message_id=channels.message_id(f"digest-{rows[-1]['webhook_id']}"))
        ledger.mark(conn, [r["webhook_id"] for r in rows], SINK, "digest", "sent", sent["external_id"])
        return {"status": "sent", "events": len(rows), "external_id": sent["external_id"]} | (
            {"refused": sent["detail"]["refused"]} if sent.get("detail") else {})
    if webhook_only(transports):
        check_slack_webhook(routing)
    messages = _digest_messages(title, rows, lines)
    configured = bool((transports.slack and transports.slack.get("token")) or transports.slack_webhook_url)
    status, externals, done = "sent", [], 0
    for msg, batch in messages:
        if not configured:
            external, status = _outbox("digest", "digest", msg)["external_id"], "skipped"
        else:
            try:
                external = channels.send_slack(msg, token=(transports.slack or {}).get("token"),
                                               channel=routing.slack_channel, webhook_url=transports.slack_webhook_url,
                                               api_url=transports.slack_api, sleep=transports.sleep)
            except OutcomeUnknown as exc:
                ledger.mark(conn, batch, SINK, "digest", "unknown", None)
                ledger.report_unknown("digest", {f"{len(batch)} lines": {"status": "unknown", "error": str(exc)}})
                return {"status": "unknown", "events": done, "unknown": len(batch), "error": str(exc)}
        ledger.mark(conn, batch, SINK, "digest", status, external)
        externals.append(external)
        done += len(batch)
    return {"status": status, "events": done, "messages": len(messages), "external_id": externals[-1]}


def _digest_messages(title: str, rows: list[dict], lines: list[str]) -> list[tuple[dict, list[str]]]:
    """(Slack message, webhook ids of its lines) pairs: each line escaped and whole in
    one section, sections within Slack's limits, at most MESSAGE_BLOCKS blocks a message."""
    escaped = [f"• {render.slack_escape(x)}" for x in lines]
    per_message = render.MESSAGE_BLOCKS - 1  # one block for the title
    messages, sections, ids, current, current_ids = [], [], [], "", []
    for row, line in zip(rows, escaped):
        line = render.slack_cut(line)
        if current and len(current) + 1 + len(line) > render.SECTION_MAX:
            sections.append(current)
            ids.append(current_ids)
            current, current_ids = "", []
        current = f"{current}\n{line}" if current else line
        current_ids = current_ids + [row["webhook_id"]]
    sections.append(current)
    ids.append(current_ids)
    for start in range(0, len(sections), per_message):
        chunk = sections[start:start + per_message]
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*"}}]
        blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": t}} for t in chunk]
        messages.append(({"text": title, "blocks": blocks}, [w for i in ids[start:start + per_message] for w in i]))
    return messages
