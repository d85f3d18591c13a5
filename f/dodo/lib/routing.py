"""Notification routing rules: which event types go to which channels, whom, how urgently.

The rules live in a Windmill variable as JSON (f/dodo/notify_routing); `load` validates
them with pydantic and names the exact place that is wrong. Rules are tried in order;
the first whose `match` (an event type, `*` wildcards allowed: `dispute.*`) fits wins.
An event no rule matches sends nothing.
"""

from __future__ import annotations

import json
import re
from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Channel = Literal["slack", "email", "sms"]
_EMAIL = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+")
_PHONE = re.compile(r"\+[1-9][0-9]{6,14}")


class RoutingError(ValueError):
    """The routing variable is not valid; the message says where and why. Permanent
    (f/dodo/lib/errors.py RETRY_IF): retrying cannot fix the variable."""

    def __init__(self, message: str):
        super().__init__(f"{message} (fix the variable f/dodo/notify_routing, then replay)")
        self.permanent = True


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _emails(v: list[str]) -> list[str]:
    bad = [a for a in v if not _EMAIL.fullmatch(a)]
    if bad:
        raise ValueError(f"not an email address: {bad[0]!r}")
    return v


def _phones(v: list[str]) -> list[str]:
    bad = [p for p in v if not _PHONE.fullmatch(p)]
    if bad:
        raise ValueError(f"not an E.164 phone number (+15551234567): {bad[0]!r}")
    return v


class Rule(_Strict):
    match: str = Field(min_length=1)
    channels: list[Channel] = []
    urgency: Literal["low", "normal", "urgent"] = "normal"
    # immediate: send now; digest: only in the daily digest; off: nothing.
    mode: Literal["immediate", "digest", "off"] = "immediate"
    slack_channel: str | None = None
    email_to: list[str] | None = None
    sms_to: list[str] | None = None
    title: str | None = None     # string.Template over the event's facts, e.g. "$title"
    summary: str | None = None   # e.g. "$amount from $customer_name"

    _check_emails = field_validator("email_to")(lambda cls, v: v if v is None else _emails(v))
    _check_phones = field_validator("sms_to")(lambda cls, v: v if v is None else _phones(v))


class Routing(_Strict):
    slack_channel: str = "#payments"
    email_from: str | None = None
    email_to: list[str] = []
    sms_to: list[str] = []
    digest_channel: Literal["slack", "email"] = "slack"
    rules: list[Rule]

    _check_emails = field_validator("email_to")(lambda cls, v: _emails(v))
    _check_phones = field_validator("sms_to")(lambda cls, v: _phones(v))

    def route(self, event_type: str) -> Rule | None:
        return next((r for r in self.rules if fnmatchcase(event_type, r.match)), None)


DEFAULT_RULES = [
    {"match": "dispute.opened", "channels": ["slack", "email"], "urgency": "urgent"},
    {"match": "dispute.*", "channels": ["slack"]},
    {"match": "payment.failed", "channels": ["slack"]},
    {"match": "subscription.on_hold", "channels": ["slack"]},
    {"match": "subscription.active", "channels": ["slack"]},
    {"match": "subscription.cancelled", "channels": ["slack"]},
    {"match": "refund.*", "channels": ["slack"]},
    # Noisy types: daily digest only.
    {"match": "payment.succeeded", "channels": ["slack"], "mode": "digest"},
    {"match": "subscription.renewed", "channels": ["slack"], "mode": "digest"},
    {"match": "credit.*", "channels": ["slack"], "mode": "digest"},
    {"match": "license_key.*", "channels": ["slack"], "mode": "digest"},
]
DEFAULT = {"slack_channel": "#payments", "email_to": [], "sms_to": [], "rules": DEFAULT_RULES}


def check_slack_webhook(routing: Routing) -> None:
    """Slack through an incoming webhook posts only to the channel chosen when the webhook
    was created (api.slack.com/messaging/webhooks): a rule's `slack_channel` could not be
    honoured, so it is an error instead of being ignored. (The top-level `slack_channel`
    is the bot token's default; with a webhook it has no effect.)"""
    bad = [i for i, rule in enumerate(routing.rules) if rule.slack_channel]
    if bad:
        raise RoutingError("; ".join(
            f"routing.rules[{i}].slack_channel: Slack is configured with an incoming webhook "
            f"(f/dodo/slack_webhook_url), which always posts to the channel it was created for and "
            f"cannot send to {routing.rules[i].slack_channel!r}. Remove slack_channel from the rule, "
            "or configure a bot token (the f/dodo/slack resource) to choose channels" for i in bad))


def load(config: str | dict | None) -> Routing:
    """Validated routing from the variable's JSON text (or a dict); None or "" = defaults."""
    if config is None or (isinstance(config, str) and not config.strip()):
        config = DEFAULT
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError as exc:
            raise RoutingError(f"routing: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    try:
        return Routing.model_validate(config)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = "routing" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
            problems.append(f"{where}: {err['msg']}")
        raise RoutingError("; ".join(problems)) from None
