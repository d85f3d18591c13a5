"""Render a normalised event for Slack (Block Kit mrkdwn), email (text + HTML) and SMS.

Customer-controlled text (names, emails, metadata, remarks) is escaped per channel
before it meets a template, so no field can format, link, ping or inject:
- Slack: & < > escaped (no `<!channel>`, `<@U..>` or links); `@channel`/`@here`/
  `@everyone` broken with a zero-width joiner so they never ping.
- HTML email: html.escape. Headers: control characters (CR/LF included) removed.
- SMS: control and bidi-override characters removed.
Templates are `string.Template` ($name), which has no attribute access.
"""

from __future__ import annotations

import html
import re
import unicodedata
from string import Template

from f.dodo.lib.money import format_major

TITLES = {
    "payment.succeeded": "Payment received", "payment.failed": "Payment failed",
    "refund.succeeded": "Refund issued", "refund.failed": "Refund failed",
    "dispute.opened": "Dispute opened", "dispute.won": "Dispute won", "dispute.lost": "Dispute lost",
    "subscription.active": "New subscription", "subscription.cancelled": "Subscription cancelled",
    "subscription.on_hold": "Subscription on hold", "subscription.renewed": "Subscription renewed",
    "subscription.failed": "Subscription failed", "subscription.expired": "Subscription expired",
}
DEFAULT_TITLE = "$title"
DEFAULT_SUMMARY = "$amount $customer_name $customer_email"
FIELD_MAX = 300
METADATA_MAX = 10

_MENTION = re.compile(r"@(?=(channel|here|everyone)\b)", re.IGNORECASE)
_BIDI = {"\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",
         "\u2066", "\u2067", "\u2068", "\u2069"}


def _clean(s: str, keep_newlines: bool = False) -> str:
    """Drop control and bidi-override characters; bounded length."""
    out = "".join(c for c in s if (keep_newlines and c == "\n")
                  or (unicodedata.category(c) != "Cc" and c not in _BIDI))
    return out[: FIELD_MAX * 8]


def slack_escape(s: str) -> str:
    s = _clean(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MENTION.sub("@\u2060", s)


def header_safe(s: str) -> str:
    """One line for an email header: no CR/LF or other control characters."""
    return " ".join(_clean(s).split())[:200]


def sms_safe(s: str) -> str:
    return " ".join(_clean(s).split())


def facts(event: dict) -> dict[str, str]:
    """The event's displayable values as raw (unescaped) strings."""
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    amount = event.get("amount")
    if event.get("amount_minor") is not None and event.get("currency"):
        amount = format_major(event["amount_minor"], event["currency"])
    etype = str(event.get("event_type") or "unknown")
    out = {
        "title": TITLES.get(etype, etype), "event_type": etype,
        "amount": f"{amount} {event.get('currency') or ''}".strip() if amount is not None else "",
        "reason": data.get("reason") or data.get("remarks") or data.get("cancellation_feedback") or "",
    }
    for key in ("customer_name", "customer_email", "customer_id", "status", "entity_id",
                "occurred_at", "webhook_id"):
        out[key] = event.get(key) or ""
    return {k: str(v)[:FIELD_MAX] for k, v in out.items()}


def metadata(event: dict) -> list[tuple[str, str]]:
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    return [(str(k)[:60], str(v)[:FIELD_MAX]) for k, v in list(meta.items())[:METADATA_MAX]]


def _fill(template: str, values: dict[str, str], escape) -> str:
    return Template(template).safe_substitute({k: escape(v) for k, v in values.items()})


def slack_message(event: dict, urgency: str = "normal", title: str = DEFAULT_TITLE,
                  summary: str = DEFAULT_SUMMARY) -> dict:
    """chat.postMessage / incoming-webhook body: fallback `text` plus Block Kit blocks."""
    f = facts(event)
    head = _fill(title, f, slack_escape)
    if urgency == "urgent":
        head = f":rotating_light: URGENT: {head}"
    line = _fill(summary, f, slack_escape)
    labels = [("Customer", "customer_name"), ("Email", "customer_email"), ("Amount", "amount"),
              ("Status", "status"), ("Reason", "reason"), ("ID", "entity_id")]
    fields = [{"type": "mrkdwn", "text": f"*{label}*\n{slack_escape(f[key])}"}
              for label, key in labels if f[key]]
    fields += [{"type": "mrkdwn", "text": f"*{slack_escape(k)}*\n{slack_escape(v)}"}
               for k, v in metadata(event)]
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{head}*\n{line}"}}]
    if fields:
        blocks.append({"type": "section", "fields": fields[:10]})
    context = " · ".join(slack_escape(f[k]) for k in ("event_type", "occurred_at", "webhook_id") if f[k])
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": f"{head}: {line}", "blocks": blocks}


def email_message(event: dict, urgency: str = "normal", title: str = DEFAULT_TITLE,
                  summary: str = DEFAULT_SUMMARY) -> dict:
    """Subject (header-safe), plain text and HTML bodies."""
    f = facts(event)
    subject = header_safe(("[URGENT] " if urgency == "urgent" else "") + "[Dodo] " + _fill(title, f, str))
    rows = [(k.replace("_", " ").capitalize(), f[k]) for k in
            ("customer_name", "customer_email", "customer_id", "amount", "status", "reason",
             "entity_id", "event_type", "occurred_at", "webhook_id") if f[k]] + metadata(event)
    text = _fill(summary, f, sms_safe) + "\n\n" + "\n".join(f"{k}: {sms_safe(v)}" for k, v in rows)
    e = html.escape
    html_rows = "".join(f"<tr><th align=\"left\">{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    body = (f"<html><body><h2>{_fill(title, f, e)}</h2><p>{_fill(summary, f, e)}</p>"
            f"<table>{html_rows}</table></body></html>")
    return {"subject": subject, "text": text, "html": body}


def sms_message(event: dict, urgency: str = "normal", title: str = DEFAULT_TITLE,
                summary: str = DEFAULT_SUMMARY) -> str:
    f = facts(event)
    prefix = "URGENT " if urgency == "urgent" else ""
    return (prefix + _fill(title, f, sms_safe) + ": " + _fill(summary, f, sms_safe))[:1600]
