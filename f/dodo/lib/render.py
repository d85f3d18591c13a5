"""Render a normalised event for Slack (Block Kit mrkdwn), email (text + HTML) and SMS.

Customer-controlled text (names, emails, metadata, remarks) is escaped per channel
before it meets a template, so no field can format, link, ping or inject:
- Slack: & < > escaped (no `<!channel>`, `<@U..>` or links); `@channel`/`@here`/
  `@everyone` broken with a zero-width joiner so they never ping.
- HTML email: inert.html_escape (html.escape's entities). Headers: control characters (CR/LF included) removed.
- SMS: control and bidi-override characters removed.
Templates are `string.Template` ($name), which has no attribute access.

Slack's Block Kit limits (slackapi/python-slack-sdk slack_sdk/models/blocks/blocks.py
@027a287a, SectionBlock: text at most 3,000 characters, at most 10 fields of 2,000 each;
a message at most 50 blocks): a longer text is refused whole with `invalid_blocks`.
Text is cut after escaping (escaping can grow it fivefold) and never inside an entity.
"""

from __future__ import annotations

import re
import unicodedata
from string import Template

from f.dodo.lib.inert import html_escape
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
SECTION_MAX = 3000  # Slack section text
SECTION_FIELD_MAX = 2000  # each of a section's fields
SECTION_FIELDS = 10
MESSAGE_BLOCKS = 50

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


def slack_cut(text: str, limit: int = SECTION_MAX) -> str:
    """At most `limit` characters of escaped mrkdwn, ending with "…" when cut; never in the
    middle of an entity (&amp; &lt; &gt;), which Slack would show broken."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&", len(cut) - 4)  # an entity is at most 5 characters: "&amp;"
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def slack_sections(lines: list[str], limit: int = SECTION_MAX) -> list[str]:
    """Escaped lines packed into as few section texts of at most `limit` characters as
    possible (a line longer than that alone is cut)."""
    out: list[str] = []
    for line in lines:
        line = slack_cut(line, limit)
        if out and len(out[-1]) + 1 + len(line) <= limit:
            out[-1] += "\n" + line
        else:
            out.append(line)
    return out


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
    fields = [{"type": "mrkdwn", "text": slack_cut(f"*{label}*\n{slack_escape(f[key])}", SECTION_FIELD_MAX)}
              for label, key in labels if f[key]]
    fields += [{"type": "mrkdwn", "text": slack_cut(f"*{slack_escape(k)}*\n{slack_escape(v)}", SECTION_FIELD_MAX)}
               for k, v in metadata(event)]
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": slack_cut(f"*{head}*\n{line}")}}]
    if fields:
        blocks.append({"type": "section", "fields": fields[:SECTION_FIELDS]})
    context = " · ".join(slack_escape(f[k]) for k in ("event_type", "occurred_at", "webhook_id") if f[k])
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": slack_cut(context)}]})
    return {"text": slack_cut(f"{head}: {line}"), "blocks": blocks}


def email_message(event: dict, urgency: str = "normal", title: str = DEFAULT_TITLE,
                  summary: str = DEFAULT_SUMMARY) -> dict:
    """Subject (header-safe), plain text and HTML bodies."""
    f = facts(event)
    subject = header_safe(("[URGENT] " if urgency == "urgent" else "") + "[Dodo] " + _fill(title, f, str))
    rows = [(k.replace("_", " ").capitalize(), f[k]) for k in
            ("customer_name", "customer_email", "customer_id", "amount", "status", "reason",
             "entity_id", "event_type", "occurred_at", "webhook_id") if f[k]] + metadata(event)
    text = _fill(summary, f, sms_safe) + "\n\n" + "\n".join(f"{k}: {sms_safe(v)}" for k, v in rows)
    e = html_escape
    html_rows = "".join(f"<tr><th align=\"left\">{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    body = (f"<html><body><h2>{_fill(title, f, e)}</h2><p>{_fill(summary, f, e)}</p>"
            f"<table>{html_rows}</table></body></html>")
    return {"subject": subject, "text": text, "html": body}


def sms_message(event: dict, urgency: str = "normal", title: str = DEFAULT_TITLE,
                summary: str = DEFAULT_SUMMARY) -> str:
    f = facts(event)
    prefix = "URGENT " if urgency == "urgent" else ""
    return (prefix + _fill(title, f, sms_safe) + ": " + _fill(summary, f, sms_safe))[:1600]
