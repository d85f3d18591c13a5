"""Notification routing rules: which event types go to which channels, whom, how urgently.

The rules live in a Windmill variable as JSON (f/dodo/notify_routing); `load` validates
them (by hand, without pydantic: see `_validate`) and names the exact place that is wrong. Rules are tried in order;
the first whose `match` (an event type, `*` wildcards allowed: `dispute.*`) fits wins.
An event no rule matches sends nothing.
"""

from __future__ import annotations

import json
import re
from collections import namedtuple
from fnmatch import fnmatchcase

_EMAIL = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+")
_PHONE = re.compile(r"\+[1-9][0-9]{6,14}")
CHANNELS = ("slack", "email", "sms")


class RoutingError(ValueError):
    """The routing variable is not valid; the message says where and why. Permanent
    (f/dodo/lib/errors.py RETRY_IF): retrying cannot fix the variable."""

    def __init__(self, message: str):
        super().__init__(f"{message} (fix the variable f/dodo/notify_routing, then replay)")
        self.permanent = True


# Named tuples, not dataclasses nor typing.NamedTuple: immutable all the same, and the
# notify step (a fresh process per event) imports neither dataclasses and inspect nor
# typing for them (f/dodo/lib/resources.py). Each field after the first has the default
# given here; no list is ever mutated.
_RULE_DEFAULTS = {
    "channels": [],              # of CHANNELS
    "urgency": "normal",         # low | normal | urgent
    "mode": "immediate",         # immediate: send now; digest: only in the daily digest; off: nothing
    "slack_channel": None,
    "email_to": None,            # list[str] | None: the routing's when None
    "sms_to": None,
    "title": None,               # string.Template over the event's facts, e.g. "$title"
    "summary": None,             # e.g. "$amount from $customer_name"
}
Rule = namedtuple("Rule", ["match", *_RULE_DEFAULTS], defaults=_RULE_DEFAULTS.values())

_ROUTING_DEFAULTS = {
    "slack_channel": "#payments",
    "email_from": None,
    "email_to": [],
    "sms_to": [],
    "digest_channel": "slack",   # slack | email
}


class Routing(namedtuple("Routing", ["rules", *_ROUTING_DEFAULTS], defaults=_ROUTING_DEFAULTS.values())):
    __slots__ = ()  # a tuple still: no per-instance dict

    def route(self, event_type: str) -> Rule | None:
        return next((r for r in self.rules if fnmatchcase(event_type, r.match)), None)


# Validation by hand, not pydantic: the notify step validates this small JSON on every
# event, and importing pydantic would cost that step (a fresh process on Windmill) about
# 5 bare interpreter starts (docs/internals.md, "What each hot-path step imports").
_ONE_OF = {"urgency": ("low", "normal", "urgent"), "mode": ("immediate", "digest", "off"),
           "digest_channel": ("slack", "email")}


def _str(where: str, value: object, problems: list[str], *, optional: bool = True, nonempty: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        problems.append(f"{where}: Input should be a valid string")
    elif nonempty and not value:
        problems.append(f"{where}: String should have at least 1 character")


def _list(where: str, value: object, problems: list[str], item_ok, item_error: str, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, list):
        problems.append(f"{where}: Input should be a valid list")
        return
    for n, item in enumerate(value):
        if not isinstance(item, str):
            problems.append(f"{where}[{n}]: Input should be a valid string")
        elif not item_ok(item):
            problems.append(item_error.format(where=where, n=n, item=item))
            return


def _emails(where: str, value: object, problems: list[str], *, optional: bool) -> None:
    _list(where, value, problems, _EMAIL.fullmatch,
          "{where}: Value error, not an email address: {item!r}", optional=optional)


def _phones(where: str, value: object, problems: list[str], *, optional: bool) -> None:
    _list(where, value, problems, _PHONE.fullmatch,
          "{where}: Value error, not an E.164 phone number (+15551234567): {item!r}", optional=optional)


def _fields(where: str, obj: object, cls, problems: list[str]) -> bool:
    if not isinstance(obj, dict):
        problems.append(f"{where}: Input should be a valid dictionary")
        return False
    known = set(cls._fields)
    problems.extend(f"{where}.{k}: Extra inputs are not permitted" for k in obj if k not in known)
    for name, allowed in _ONE_OF.items():
        if name in known and name in obj and obj[name] not in allowed:
            problems.append(f"{where}.{name}: Input should be " + ", ".join(repr(a) for a in allowed[:-1])
                            + f" or {allowed[-1]!r}")
    return True


def _rule(where: str, obj: object, problems: list[str]) -> Rule | None:
    before = len(problems)
    if not _fields(where, obj, Rule, problems):
        return None
    if "match" not in obj:
        problems.append(f"{where}.match: Field required")
    else:
        _str(f"{where}.match", obj["match"], problems, optional=False, nonempty=True)
    _list(f"{where}.channels", obj.get("channels", []), problems, lambda c: c in CHANNELS,
          "{where}[{n}]: Input should be 'slack', 'email' or 'sms'", optional=False)
    for name in ("slack_channel", "title", "summary"):
        _str(f"{where}.{name}", obj.get(name), problems)
    _emails(f"{where}.email_to", obj.get("email_to"), problems, optional=True)
    _phones(f"{where}.sms_to", obj.get("sms_to"), problems, optional=True)
    return Rule(**obj) if len(problems) == before else None


def _validate(obj: object) -> Routing:
    problems: list[str] = []
    rules: list[Rule] = []
    if _fields("routing", obj, Routing, problems):
        _str("routing.slack_channel", obj.get("slack_channel", "#payments"), problems, optional=False)
        _str("routing.email_from", obj.get("email_from"), problems)
        _emails("routing.email_to", obj.get("email_to", []), problems, optional=False)
        _phones("routing.sms_to", obj.get("sms_to", []), problems, optional=False)
        if "rules" not in obj:
            problems.append("routing.rules: Field required")
        elif not isinstance(obj["rules"], list):
            problems.append("routing.rules: Input should be a valid list")
        else:
            rules = [_rule(f"routing.rules[{n}]", r, problems) for n, r in enumerate(obj["rules"])]
    if problems:
        raise RoutingError("; ".join(problems))
    return Routing(**{**obj, "rules": rules})


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
    return _validate(config)
