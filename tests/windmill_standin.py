"""A recording stand-in for the Windmill API endpoints that `wmill sync push` calls.

A real HTTP server on 127.0.0.1 (werkzeug, in a thread) holding one in-memory workspace.
It answers with the shapes of Windmill's OpenAPI description
(backend/windmill-api/openapi.yaml) and records every request, so a test can check what
the pinned CLI deployed.

How the CLI (npm windmill-cli 1.819.0) pushes, read from its source and watched here:
it identifies the user, downloads the remote workspace as a zip
(`GET /w/{ws}/workspaces/tarball`), diffs it against the local files, then for each
changed item GETs the remote object and creates or updates it. The tarball is built from
the in-memory workspace in the server's export layout
(backend/windmill-api/src/workspaces_export.rs), so a second push sees the first's result.

Any request without a route here is recorded in `unhandled` and answered 404.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

USERNAME = "deployer"
EMAIL = "deployer@example.com"
TRIGGER_KINDS = ("http", "websocket", "kafka", "nats", "postgres", "mqtt", "amqp", "sqs",
                 "gcp", "azure", "email")

# Collections the CLI reads and writes the same way: GET get/<key>, GET exists/<key>,
# POST create, POST update/<key>.  kind -> (URL segment, key field).
COLLECTIONS: dict[str, tuple[str, str]] = {
    "folder": ("folders", "name"),
    "flow": ("flows", "path"),
    "schedule": ("schedules", "path"),
    "variable": ("variables", "path"),
    "resource_type": ("resources/type", "name"),
    **{f"{k}_trigger": (f"{k}_triggers", "path") for k in TRIGGER_KINDS},
}

# Request-only keys, not part of the stored object.
_REQUEST_ONLY = {"deployment_message", "skip_draft_deletion", "preserve_permissioned_as",
                 "preserve_on_behalf_of", "ws_specific"}

# NewScript keys that steer the create rather than describe the script.
_SCRIPT_REQUEST_ONLY = {"parent_hash", "auto_parent", "skip_draft_deletion",
                        "deployment_message", "preserve_on_behalf_of"}

# Keys the export strips from every object (to_string_without_metadata).
_EXPORT_STRIPPED = {
    "workspace_id", "path", "name", "versions", "id", "created_at", "updated_at",
    "created_by", "updated_by", "edited_at", "edited_by", "permissioned_as", "archived",
    "error", "last_server_ping", "server_id", "raw_app",
}

# Script file extension per language in the export (default_ts=bun).
_SCRIPT_EXT = {
    "python3": "py", "bun": "ts", "deno": "deno.ts", "nativets": "fetch.ts", "go": "go",
    "bash": "sh", "powershell": "ps1", "postgresql": "pg.sql", "mysql": "my.sql",
    "bigquery": "bq.sql", "snowflake": "sf.sql", "mssql": "ms.sql", "graphql": "gql",
    "php": "php", "rust": "rs", "csharp": "cs", "nu": "nu", "java": "java", "ruby": "rb",
    "duckdb": "duckdb.sql",
}

# Optional script settings kept when set (NewScript -> Script -> ScriptMetadata).
_SCRIPT_OPTIONAL = (
    "envs", "cache_ttl", "dedicated_worker", "priority", "tag", "timeout",
    "delete_after_secs", "restart_unless_cancelled", "visible_to_runner_only", "codebase",
    "has_preprocessor", "on_behalf_of_email", "concurrent_limit",
    "concurrency_time_window_s", "concurrency_key", "debounce_key", "debounce_delay_s",
    "labels", "modules",
)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _json(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value), status=status, mimetype="application/json")


def _text(value: str, status: int = 200) -> Response:
    return Response(value, status=status, mimetype="text/plain")


@dataclass
class Recorded:
    """One request as the stand-in received it."""

    method: str
    path: str  # without the /api prefix, e.g. /w/dodo/scripts/create
    query: dict[str, str]
    body: Any  # parsed JSON, else text, else None
    route: str = ""  # the matched route template, "" when unhandled

    @property
    def line(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def is_write(self) -> bool:
        return self.method == "POST" and ("/create" in self.path or "/update/" in self.path)


@dataclass
class Workspace:
    """Latest version of each deployed item: scripts by path, the rest by kind then key."""

    id: str
    scripts: dict[str, dict] = field(default_factory=dict)
    items: dict[str, dict[str, dict]] = field(
        default_factory=lambda: {kind: {} for kind in COLLECTIONS})

    @property
    def flows(self) -> dict[str, dict]:
        return self.items["flow"]

    @property
    def folders(self) -> dict[str, dict]:
        return self.items["folder"]

    @property
    def schedules(self) -> dict[str, dict]:
        return self.items["schedule"]

    def triggers(self) -> dict[str, dict[str, dict]]:
        """Non-empty trigger collections, e.g. {"http_trigger": {path: trigger}}."""
        return {k: v for k, v in self.items.items() if k.endswith("_trigger") and v}


def _routes() -> list[Rule]:
    rules = [
        Rule("/version", endpoint="version", methods=["GET"]),
        Rule("/users/whoami", endpoint="global_whoami", methods=["GET"]),
        Rule("/workspaces/users", endpoint="user_workspaces", methods=["GET"]),
        Rule("/w/<ws>/users/whoami", endpoint="whoami", methods=["GET"]),
        Rule("/w/<ws>/workspaces/list_ws_specific", endpoint="list_ws_specific",
             methods=["GET"]),
        Rule("/w/<ws>/resources/file_resource_type_to_file_ext_map", endpoint="file_ext_map",
             methods=["GET"]),
        Rule("/w/<ws>/workspaces/tarball", endpoint="tarball", methods=["GET"]),
        Rule("/w/<ws>/jobs/queue/list", endpoint="list_jobs", methods=["GET"]),
        Rule("/w/<ws>/jobs/completed/list", endpoint="list_jobs", methods=["GET"]),
        Rule("/w/<ws>/scripts/get/p/<path:key>", endpoint="get_script", methods=["GET"]),
        Rule("/w/<ws>/scripts/exists/p/<path:key>", endpoint="exists_script", methods=["GET"]),
        Rule("/w/<ws>/scripts/create", endpoint="create_script", methods=["POST"]),
        Rule("/w/<ws>/schedules/setenabled/<path:key>", endpoint="set_schedule_enabled",
             methods=["POST"]),
    ]
    for kind, (seg, _) in COLLECTIONS.items():
        d = {"kind": kind}
        rules += [
            Rule(f"/w/<ws>/{seg}/get/<path:key>", endpoint="get", defaults=d, methods=["GET"]),
            Rule(f"/w/<ws>/{seg}/exists/<path:key>", endpoint="exists", defaults=d,
                 methods=["GET"]),
            Rule(f"/w/<ws>/{seg}/create", endpoint="create", defaults=d, methods=["POST"]),
            Rule(f"/w/<ws>/{seg}/update/<path:key>", endpoint="update", defaults=d,
                 methods=["POST"]),
        ]
    return rules


class WindmillStandin:
    """`with WindmillStandin("dodo", token) as wm:`; then `--base-url wm.base_url`."""

    def __init__(self, workspace: str = "dodo", token: str = "standin-token",
                 edition: str = "CE"):
        self.ws = Workspace(workspace)
        self.edition = edition
        self.token = token
        self.requests: list[Recorded] = []
        self.unhandled: list[Recorded] = []
        self.unauthorized: list[Recorded] = []
        self._lock = threading.Lock()
        self._urls = Map(_routes()).bind("127.0.0.1")
        self._server = None
        self._thread = None

    # -- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> "WindmillStandin":
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request log lines
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._thread.join()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    # -- what a test reads ---------------------------------------------------------------
    def writes(self, since: int = 0) -> list[Recorded]:
        """Every create/update request from request number `since` on, in order."""
        return [r for r in self.requests[since:] if r.is_write]

    def endpoints(self) -> list[str]:
        """Distinct `METHOD /api/route` templates called, in first-call order."""
        lines = [f"{r.method} /api{r.route}" for r in self.requests if r.route]
        return list(dict.fromkeys(lines))

    # -- WSGI ------------------------------------------------------------------------------
    def _wsgi(self, environ, start_response):
        request = Request(environ)
        raw = request.get_data()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        rec = Recorded(request.method, request.path.removeprefix("/api"),
                       dict(request.args), body)
        with self._lock:
            self.requests.append(rec)
            response = self._dispatch(request, rec)
        return response(environ, start_response)

    def _dispatch(self, request: Request, rec: Recorded) -> Response:
        try:
            rule, args = self._urls.match(rec.path, method=rec.method, return_rule=True)
        except HTTPException:
            self.unhandled.append(rec)
            return _text(f"Not found: no stand-in route for {rec.line}", 404)
        rec.route = rule.rule
        authorised = request.headers.get("Authorization", "").strip() == f"Bearer {self.token}"
        if rule.endpoint != "version" and not authorised:  # /version is public
            self.unauthorized.append(rec)
            return _text("Unauthorized: invalid token", 401)
        if args.pop("ws", self.ws.id) != self.ws.id:
            return _text(f"Not found: workspace {rec.path.split('/')[2]}", 404)
        return getattr(self, "_h_" + rule.endpoint)(rec, **args)

    # -- identity and settings ----------------------------------------------------------------
    def _h_version(self, rec):
        return _text(f"{self.edition} v1.819.0")

    def _h_global_whoami(self, rec):  # GlobalUserInfo
        return _json({"email": EMAIL, "login_type": "password", "super_admin": False,
                      "devops": False, "verified": True, "name": "Deployer",
                      "username": USERNAME, "operator_only": False,
                      "first_time_user": False, "role_source": "manual", "disabled": False})

    def _h_whoami(self, rec):  # User
        return _json({"email": EMAIL, "username": USERNAME, "is_admin": True,
                      "name": "Deployer", "is_super_admin": False,
                      "created_at": "2026-01-01T00:00:00Z", "operator": False,
                      "disabled": False, "groups": [], "folders": [], "folders_owners": [],
                      "added_via": None})

    def _h_user_workspaces(self, rec):  # UserWorkspaceList
        return _json({"email": EMAIL, "workspaces": [
            {"id": self.ws.id, "name": self.ws.id, "username": USERNAME, "color": None,
             "disabled": False, "parent_workspace_id": None}]})

    def _h_list_ws_specific(self, rec):  # [{item_kind, path}]
        return _json([])

    def _h_file_ext_map(self, rec):  # {resource_type: format_extension}
        return _json({})

    def _h_list_jobs(self, rec):  # [QueuedJob] / [CompletedJob]: no dependency jobs here
        return _json([])

    def _h_tarball(self, rec):
        if rec.query.get("archive_type", "tar") != "zip":
            return _text("Bad request: Invalid Archive Type (stand-in serves zip only)", 400)
        return Response(self.export_zip(rec.query), mimetype="application/octet-stream")

    # -- scripts: immutable versions, a create with parent_hash is the update ----------------
    def _h_get_script(self, rec, key):  # Script
        script = self.ws.scripts.get(key)
        if script is None:
            return _text(f"Not found: script not found at name {key}", 404)
        return _json(script)

    def _h_exists_script(self, rec, key):
        return _json(key in self.ws.scripts)

    def _h_create_script(self, rec):  # NewScript -> hash, 201
        b = rec.body
        prev = self.ws.scripts.get(b["path"])
        if prev and b.get("parent_hash") != prev["hash"]:
            return _text(f"Bad request: path {b['path']} exists, parent_hash required", 400)
        digest = hashlib.sha256(json.dumps(b, sort_keys=True).encode()).hexdigest()[:16]
        script = {k: v for k, v in b.items() if v is not None and k not in _SCRIPT_REQUEST_ONLY}
        script.update({
            "workspace_id": self.ws.id, "hash": digest,
            "parent_hashes": [prev["hash"]] if prev else [], "created_by": USERNAME,
            "created_at": _now(), "archived": False, "deleted": False, "is_template": False,
            "extra_perms": {}, "lock": b.get("lock"), "schema": b.get("schema"),
            "kind": b.get("kind") or "script", "starred": False, "has_draft": False,
            "draft_only": False, "no_main_func": None,
            "ws_error_handler_muted": bool(b.get("ws_error_handler_muted")),
        })
        self.ws.scripts[b["path"]] = script
        return _text(digest, 201)

    # -- the generic collections ----------------------------------------------------------------
    def _h_get(self, rec, kind, key):
        item = self.ws.items[kind].get(key)
        if item is None:
            return _text(f"Not found: {kind} {key} not found", 404)
        return _json(item)

    def _h_exists(self, rec, kind, key):
        return _json(key in self.ws.items[kind])

    def _h_create(self, rec, kind):
        key = rec.body[COLLECTIONS[kind][1]]
        if key in self.ws.items[kind]:
            return _text(f"Bad request: {kind} {key} already exists", 400)
        if kind == "schedule" and (refused := self._refuse_schedule(rec.body)):
            return refused
        self.ws.items[kind][key] = self._stored(kind, rec.body, None)
        return _text(key, 200 if kind == "folder" else 201)

    def _h_update(self, rec, kind, key):
        prev = self.ws.items[kind].get(key)
        if prev is None:
            return _text(f"Not found: {kind} {key} not found", 404)
        body = {**rec.body, COLLECTIONS[kind][1]: key}
        if kind in ("folder", "variable"):  # partial edits (EditFolder, EditVariable)
            body = {**prev, **{k: v for k, v in body.items() if v is not None}}
        if kind == "schedule" and (refused := self._refuse_schedule({**prev, **body})):
            return refused
        self.ws.items[kind][key] = self._stored(kind, body, prev)
        return _text(key)

    def _h_set_schedule_enabled(self, rec, key):
        schedule = self.ws.schedules.get(key)
        if schedule is None:
            return _text(f"Not found: schedule {key} not found", 404)
        schedule["enabled"] = bool(rec.body["enabled"])
        return _text(f"succesfully updated schedule at path {key} to status {schedule['enabled']}")

    def _refuse_schedule(self, body: dict) -> Response | None:
        """The checks create_schedule/edit_schedule make (windmill-api/src/schedule.rs).

        An enabled schedule queues its next job at once, which needs the script's latest
        hash or the flow, so its runnable must already be deployed. Community edition
        refuses the enterprise-only handlers.
        """
        fields = len(str(body.get("schedule", "")).split())
        if fields not in (5, 6, 7):
            return _text(f"Bad request: invalid cron expression {body.get('schedule')!r}", 400)
        if self.edition == "CE" and (body.get("on_recovery") or body.get("on_success") or (
                body.get("on_failure_times") or 1) > 1):
            return _text("Bad request: on_recovery, on_success and on_failure_times > 1 are "
                         "only available in enterprise version", 400)
        target = body["script_path"]
        deployed = self.ws.flows if body["is_flow"] else self.ws.scripts
        if body.get("enabled", False) and target not in deployed:
            what = "flow" if body["is_flow"] else "script"
            return _text(f"Not found: {what} not found at path {target} "
                         f"(schedule {body['path']} cannot queue its next job)", 404)
        return None

    def _stored(self, kind: str, body: dict, prev: dict | None) -> dict:
        """The object as the server keeps it: the request plus server-set fields."""
        item = {k: v for k, v in body.items() if k not in _REQUEST_ONLY}
        item["workspace_id"] = self.ws.id
        if kind == "folder":
            item.setdefault("display_name", item["name"])
            item.setdefault("owners", [])
            item.setdefault("extra_perms", {})
            item.update(created_by=USERNAME, edited_at=_now())
            return item
        item.update(edited_by=USERNAME, edited_at=_now(), extra_perms={})
        if kind == "flow":
            item.setdefault("summary", "")
            item["archived"] = False
        elif kind == "schedule":
            item.setdefault("enabled", prev["enabled"] if prev else False)
            item.update(email=EMAIL, permissioned_as=f"u/{USERNAME}")
        elif kind.endswith("_trigger"):
            item.setdefault("mode", "enabled")
            item.update(email=EMAIL, permissioned_as=f"u/{USERNAME}")
        elif kind == "variable":
            item.setdefault("is_secret", False)
            item.update(is_oauth=False, is_expired=False, is_linked=False, is_refreshed=False)
        return item

    # -- the tarball -------------------------------------------------------------------------------
    def export_zip(self, query: dict[str, str]) -> bytes:
        """The workspace in the export layout the CLI diffs the local files against."""
        yes = lambda name: query.get(name) == "true"  # noqa: E731
        files: dict[str, Any] = {}
        for name, folder in self.ws.folders.items():
            files[f"f/{name}/folder.meta.json"] = _exported(folder, keep_perms=True)
        for path, s in self.ws.scripts.items():
            files[f"{path}.{_SCRIPT_EXT.get(s['language'], 'txt')}"] = s["content"]
            meta = {k: s[k] for k in ("summary", "description", "schema", "lock", "kind")}
            meta.update({k: s[k] for k in _SCRIPT_OPTIONAL if s.get(k) is not None})
            if s["ws_error_handler_muted"]:
                meta["ws_error_handler_muted"] = True
            files[f"{path}.script.json"] = meta
        for path, flow in self.ws.flows.items():
            files[f"{path}.flow.json"] = _exported(flow)
        if not yes("skip_resource_types"):
            for name, rt in self.ws.items["resource_type"].items():
                files[f"{name}.resource-type.json"] = _exported(rt)
        if not yes("skip_variables"):
            for path, v in self.ws.items["variable"].items():
                if not (v["is_secret"] and yes("skip_secrets")):
                    files[f"{path}.variable.json"] = _exported(v)
        if yes("include_schedules"):
            for path, s in self.ws.schedules.items():
                files[f"{path}.schedule.json"] = _exported(s)
        if yes("include_triggers"):
            for kind, triggers in self.ws.triggers().items():
                for path, t in triggers.items():
                    files[f"{path}.{kind}.json"] = _exported(t)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name in sorted(files):
                content = files[name]
                z.writestr(name, content if isinstance(content, str)
                           else json.dumps(content, indent=2))
        return buf.getvalue()


def _exported(item: dict, keep_perms: bool = False) -> dict:
    """to_string_without_metadata: drop identity and audit keys (and empty perms)."""
    return {k: v for k, v in item.items()
            if k not in _EXPORT_STRIPPED and (keep_perms or k != "extra_perms")}
