"""Local stand-ins for Windmill variables and resources.

Sources, later ones winning: the bundle's non-secret ``*.variable.yaml`` files, a
JSON/YAML file (``WM_LOCAL_CONFIG``) of ``{variables: {path: str}, resources: {path:
dict}, error_handler: "script/<path>" | {path, extra_args}}``, then environment variables
mapped to the bundle's Windmill paths (below).
State written through ``wmill.set_state`` lives in memory beside the resources, as in
Windmill where state is a resource of type ``state``.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from f.dodo.lib.db import dsn_to_resource

from . import deep

# env var -> Windmill variable path
ENV_VARIABLES = {
    "DODO_WEBHOOK_SECRET": "f/dodo/webhook_secret",
    "DODO_WEBHOOK_SECRET_PREVIOUS": "f/dodo/webhook_secret_previous",
    "SLACK_WEBHOOK_URL": "f/dodo/slack_webhook_url",
}
# resource path -> {field: env var}, fields as the resource types name them (hubspot,
# slack, smtp: Windmill's; twilio: twilio.resource-type.yaml). A resource exists only
# when its first field is set: without it the sinks fall back to the local outbox.
ENV_RESOURCES = {
    "f/dodo/hubspot": {"token": "HUBSPOT_TOKEN"},
    "f/dodo/slack": {"token": "SLACK_TOKEN"},
    "f/dodo/smtp": {"host": "SMTP_HOST", "port": "SMTP_PORT", "user": "SMTP_USER", "password": "SMTP_PASSWORD"},
    "f/dodo/twilio": {"accountSid": "TWILIO_ACCOUNT_SID", "token": "TWILIO_AUTH_TOKEN",
                      "from_number": "TWILIO_FROM", "messaging_service_sid": "TWILIO_MESSAGING_SERVICE_SID"},
    "f/dodo/posthog": {"api_key": "POSTHOG_API_KEY", "host": "POSTHOG_HOST"},
    "f/dodo/segment": {"write_key": "SEGMENT_WRITE_KEY", "base_url": "SEGMENT_API_URL"},
    "f/dodo/mailchimp": {"api_key": "MAILCHIMP_API_KEY", "list_id": "MAILCHIMP_LIST_ID",
                         "status_if_new": "MAILCHIMP_STATUS_IF_NEW", "base_url": "MAILCHIMP_API_URL"},
    "f/dodo/gcal": {"token": "GCAL_TOKEN", "calendar_id": "GCAL_CALENDAR_ID", "base_url": "GCAL_API_URL"},
}
POSTGRES_RESOURCE = "f/dodo/postgres"
# The Postgres schema the local commands migrate and read: the scripts' default `schema`
# argument, which the entry flow's steps and the schedules use (they pass none). There is
# no environment variable for it: on Windmill a job's schema is its `schema` argument only.
SCHEMA = "dodo"

# windmill-worker common.rs@20db3a33 `transform_json`: only a top-level argument whose raw
# JSON matches this is walked (then `$NAME` reserved strings in it are substituted too).
RESOLVE_GATE = re.compile(r"\$(?:var|res|encrypted):")
# `transform_json_value`: arrays are walked only this deep (the argument itself is depth 0)
# and only up to this many items; objects at any depth.
ARRAY_MAX_DEPTH, ARRAY_MAX_ITEMS = 2, 1000
# The worker parses a gated argument with serde_json, whose recursion limit refuses a
# 128th level of nesting ("Error while parsing inner arg").
SERDE_MAX_DEPTH = 127


def _gated(value: Any) -> bool:
    """Whether the argument's JSON text matches RESOLVE_GATE: some string or key holds
    one of its texts (JSON escapes none of their characters, and a key's closing quote
    keeps `"$var": ...` from matching). Walked without serialising: a large body is not
    copied for the check."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "$" in item and RESOLVE_GATE.search(item):
                return True
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and "$" in key and RESOLVE_GATE.search(key):
                    return True
                stack.append(child)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


class ArgumentError(Exception):
    """An argument the worker cannot resolve: the job fails before its code runs, with
    Windmill's result for a worker error, {"name": "InternalErr", "message": ...}
    (windmill-worker handle_job_error; messages from common.rs, Error's Display)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.result = {"error": {"name": "InternalErr", "message": message}}


def bundle_variables(root: str | Path) -> dict[str, str]:
    """The non-secret `f/**/*.variable.yaml` values, as a workspace holds them after
    `wmill sync push` (secret ones are not pushed: skipSecrets)."""
    root = Path(root)
    out = {}
    for file in sorted((root / "f").rglob("*.variable.yaml")):
        v = yaml.safe_load(file.read_text()) or {}
        if not v.get("is_secret"):
            out[str(file.relative_to(root)).removesuffix(".variable.yaml")] = str(v.get("value", ""))
    return out


def bundle_schedules(root: str | Path) -> list[dict]:
    """The `f/**/*.schedule.yaml` files as Windmill's schedules/list answers them
    (path, script_path, is_flow, args, enabled)."""
    root = Path(root)
    out = []
    for file in sorted((root / "f").rglob("*.schedule.yaml")):
        s = yaml.safe_load(file.read_text()) or {}
        out.append({"path": str(file.relative_to(root)).removesuffix(".schedule.yaml"),
                    "script_path": s.get("script_path"), "is_flow": bool(s.get("is_flow")),
                    "args": s.get("args") or {}, "enabled": s.get("enabled", True), "schedule": s.get("schedule")})
    return out


def env_resources(env: Mapping[str, str]) -> dict[str, dict]:
    """The integration resources the environment configures (ENV_RESOURCES)."""
    out = {}
    for path, fields in ENV_RESOURCES.items():
        if not env.get(next(iter(fields.values()))):
            continue
        res: dict[str, Any] = {name: env[var] for name, var in fields.items() if env.get(var)}
        if "port" in res:
            res["port"] = int(res["port"])
        out[path] = res
    return out


@dataclass
class Config:
    variables: dict[str, str] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    workspace: str = "demo"
    secret_paths: set[str] = field(default_factory=set)  # variables created or loaded as secrets
    schedules: list[dict] = field(default_factory=list)  # the bundle's schedules (with `root`)
    # The workspace error handler (Workspace settings -> Error handler), as Windmill stores
    # it: {"path": "script/<path>" | "flow/<path>", "extra_args": {...}}; None: not set.
    error_handler: dict | None = None
    encrypted: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, file: str | Path | None = None,
                 root: str | Path | None = None) -> "Config":
        """Later sources win: the bundle's shipped variables (with `root`), the
        WM_LOCAL_CONFIG file, then the environment (ENV_VARIABLES, ENV_RESOURCES,
        DATABASE_URL -> f/dodo/postgres)."""
        env = os.environ if env is None else env
        cfg = cls(workspace=env.get("WM_WORKSPACE") or "demo")
        if root is not None:
            cfg.variables.update(bundle_variables(root))
            cfg.schedules = bundle_schedules(root)
        file = file or env.get("WM_LOCAL_CONFIG")
        if file:
            data = yaml.safe_load(Path(file).read_text()) or {}
            cfg.variables.update({k: str(v) for k, v in (data.get("variables") or {}).items()})
            cfg.resources.update(data.get("resources") or {})
            handler = data.get("error_handler")
            cfg.error_handler = {"path": handler} if isinstance(handler, str) else handler
        for var, path in ENV_VARIABLES.items():
            if env.get(var):
                cfg.variables[path] = env[var]
                cfg.secret_paths.add(path)
        cfg.resources.update(env_resources(env))
        if env.get("DATABASE_URL"):
            cfg.resources[POSTGRES_RESOURCE] = dict(dsn_to_resource(env["DATABASE_URL"]))
        return cfg

    def get_variable(self, path: str) -> str:
        try:
            return self.variables[path]
        except KeyError:
            raise KeyError(f"variable not found: {path}") from None

    def get_resource(self, path: str, interpolated: bool = True) -> Any:
        with self._lock:
            if path not in self.resources:
                raise KeyError(f"resource not found: {path}")
            value = self.resources[path]
        return self.interpolate(value) if interpolated else value

    def set_resource(self, path: str, value: Any) -> None:
        with self._lock:
            self.resources[path] = json.loads(json.dumps(value))

    def encrypt(self, value: Any) -> str:
        """A `$encrypted:` string that this workspace decrypts to `value` (Windmill encrypts
        with the workspace key; here a registry stands in for the key)."""
        token = secrets.token_hex(16)
        with self._lock:
            self.encrypted[token] = json.loads(json.dumps(value))
        return f"$encrypted:{token}"

    def resolve_args(self, args: dict, reserved: Mapping[str, str]) -> dict:
        """A job's arguments as the worker hands them to the code (common.rs@20db3a33
        `transform_json` / `transform_json_value`), for every job: script steps, the
        preprocessor, the failure module, scripts run by path.

        Only an argument whose JSON text matches RESOLVE_GATE is walked. In it, a string
        starting with `$var:` becomes the variable, `$res:` the resource (itself
        interpolated), `$encrypted:` the decrypted value, `$NAME` the reserved variable
        NAME (left as is when NAME is not one); objects are walked at any depth (keys
        untouched), arrays only at depth <= 2 and with <= 1000 items. A path that does not
        exist fails the job (ArgumentError)."""
        out = {}
        for name, value in args.items():
            if isinstance(value, (str, dict, list)) and _gated(value):
                if deep.deeper_than(value, SERDE_MAX_DEPTH):
                    raise ArgumentError("Internal: Error while parsing inner arg: recursion limit exceeded")
                value = self._transform(name, value, reserved)
            out[name] = value
        return out

    def _transform(self, name: str, value: Any, reserved: Mapping[str, str]) -> Any:
        """transform_json_value, iteratively: (name, depth) travel with each value; a
        child of an object is named by its key, an array item keeps the array's name."""
        root: list = [None]
        stack = [(value, name, 0, root, 0)]
        while stack:
            item, label, depth, dest, slot = stack.pop()
            if isinstance(item, str):
                dest[slot] = self._resolve_string(label, item, reserved)
            elif isinstance(item, dict):
                copy: Any = dict(item)
                for key, child in item.items():
                    stack.append((child, key, depth + 1, copy, key))
                dest[slot] = copy
            elif isinstance(item, list) and depth <= ARRAY_MAX_DEPTH and len(item) <= ARRAY_MAX_ITEMS:
                copy = list(item)
                for index, child in enumerate(item):
                    stack.append((child, label, depth + 1, copy, index))
                dest[slot] = copy
            else:
                dest[slot] = item
        return root[0]

    def _resolve_string(self, name: str, text: str, reserved: Mapping[str, str]) -> Any:
        if text.startswith("$var:"):
            path = text[5:]
            if path not in self.variables:
                raise ArgumentError(f"Not found: Variable {path} not found for `{name}`: 404 variable not found")
            return self.variables[path]
        if text.startswith("$res:"):
            path = text[5:]
            if len(path.split("/")) < 2:
                raise ArgumentError(f"Internal: Argument `{name}` is an invalid resource path: {path}")
            try:
                return self.get_resource(path)
            except KeyError:
                raise ArgumentError(f"Not found: Resource {path} not found for `{name}`: 404 resource not found") from None
        if text.startswith("$encrypted:"):
            with self._lock:
                if text[11:] not in self.encrypted:
                    raise ArgumentError("Internal: Failed to decrypt '$encrypted:' value")
                return self.encrypted[text[11:]]
        if text.startswith("$"):
            return reserved.get(text[1:], text)
        return text

    def interpolate(self, value: Any) -> Any:
        """A resource's `$var:` / `$res:` strings resolved (resources/get_value_interpolated),
        walked without recursion. Job arguments are resolved by `resolve_args`."""
        return deep.walk(value, self._resolve)

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, str):
            if value.startswith("$var:"):
                return self.get_variable(value[5:])
            if value.startswith("$res:"):
                return self.get_resource(value[5:])
        return value
