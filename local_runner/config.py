"""Local stand-ins for Windmill variables and resources.

Sources, later ones winning: a JSON/YAML file (``WM_LOCAL_CONFIG``) of
``{variables: {path: str}, resources: {path: dict}}``, then environment variables
mapped to the bundle's Windmill paths (below). State written through
``wmill.set_state`` lives in memory beside the resources, as in Windmill where state
is a resource of type ``state``.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit, parse_qs

import yaml

# env var -> Windmill variable path
ENV_VARIABLES = {
    "DODO_WEBHOOK_SECRET": "f/dodo/webhook_secret",
    "DODO_WEBHOOK_SECRET_PREVIOUS": "f/dodo/webhook_secret_previous",
}
# env var -> (resource path, parser)
POSTGRES_RESOURCE = "f/dodo/postgres"


def postgres_resource(url: str) -> dict:
    """A Windmill `postgresql` resource dict from a postgres:// URL."""
    u = urlsplit(url)
    query = parse_qs(u.query)
    return {
        "host": u.hostname or (query.get("host", ["localhost"])[0]),
        "port": u.port or 5432,
        "user": unquote(u.username or ""),
        "password": unquote(u.password or ""),
        "dbname": (u.path or "/").lstrip("/") or "postgres",
        "sslmode": query.get("sslmode", ["disable"])[0],
    }


@dataclass
class Config:
    variables: dict[str, str] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    workspace: str = "demo"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, file: str | Path | None = None) -> "Config":
        env = os.environ if env is None else env
        cfg = cls(workspace=env.get("WM_WORKSPACE") or "demo")
        file = file or env.get("WM_LOCAL_CONFIG")
        if file:
            data = yaml.safe_load(Path(file).read_text()) or {}
            cfg.variables.update({k: str(v) for k, v in (data.get("variables") or {}).items()})
            cfg.resources.update(data.get("resources") or {})
        for var, path in ENV_VARIABLES.items():
            if env.get(var):
                cfg.variables[path] = env[var]
        if env.get("DATABASE_URL"):
            cfg.resources[POSTGRES_RESOURCE] = postgres_resource(env["DATABASE_URL"])
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
        """Resolve `$var:` / `$res:` strings, as Windmill does for job args and resources."""
        if isinstance(value, str):
            if value.startswith("$var:"):
                return self.get_variable(value[5:])
            if value.startswith("$res:"):
                return self.get_resource(value[5:])
            return value
        if isinstance(value, dict):
            return {k: self.interpolate(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.interpolate(v) for v in value]
        return value
