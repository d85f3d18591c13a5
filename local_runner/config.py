"""Local stand-ins for Windmill variables and resources.

Sources, later ones winning: the bundle's non-secret ``*.variable.yaml`` files, a
JSON/YAML file (``WM_LOCAL_CONFIG``) of ``{variables: {path: str}, resources: {path:
dict}}``, then environment variables mapped to the bundle's Windmill paths (below).
State written through ``wmill.set_state`` lives in memory beside the resources, as in
Windmill where state is a resource of type ``state``.
"""
from __future__ import annotations

import json
import os
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

    def interpolate(self, value: Any) -> Any:
        """Resolve `$var:` / `$res:` strings, as Windmill does for job args and resources,
        walked without recursion: a deeply nested delivery reaches its script."""
        return deep.walk(value, self._resolve)

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, str):
            if value.startswith("$var:"):
                return self.get_variable(value[5:])
            if value.startswith("$res:"):
                return self.get_resource(value[5:])
        return value
