"""Windmill resource types the bundle's entry scripts take.

Windmill infers a resource input from the annotation's name alone
(`db: postgresql` -> `format: resource-postgresql`, windmill-parser-py), so the
entry scripts import these instead of each declaring its own copy.

Each is a `dict` subclass whose annotations list the resource's fields (all required
unless the class says every field is optional), not a `typing.TypedDict`: a job receives a plain dict
either way, and `typing` would cost every step that takes a resource ~4 ms of CPU for its
import (a fresh process per job). For the same reason the bundle's hot-path modules
write `object` for "anything" and take `Callable`/`Iterator` from `collections.abc`
(docs/internals.md, "What each hot-path step imports").
"""


def configured(value: object) -> object:
    """`value`, or None when it is empty: a variable that is "" (or blank) or a resource
    whose fields are all empty (None, blank, {} or []) counts as not configured, exactly as
    an absent one does. Windmill lets both exist empty, and the preprocessor only asks
    whether they exist, so every step that receives one decides here."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, dict):
        return value if any(configured(v) is not None for v in value.values()) else None
    if isinstance(value, (list, tuple)):
        return value if any(configured(v) is not None for v in value) else None
    return value


class postgresql(dict):  # every field optional
    host: str
    port: int
    user: str
    password: str
    dbname: str
    sslmode: str
    root_certificate_pem: str


class mysql(dict):  # every field optional
    """Windmill's hub type (windmilldocs docs/integrations/mysql.md, docs/meta/5_sql_quickstart)."""
    host: str
    port: int
    user: str
    password: str
    database: str
    ssl: bool


class hubspot(dict):
    token: str


class slack(dict):
    token: str


class smtp(dict):  # every field optional
    host: str
    port: int
    user: str
    password: str


class dodo_twilio(dict):  # every field optional
    accountSid: str
    token: str
    from_number: str
    messaging_service_sid: str


class dodo_payments(dict):  # every field optional
    api_key: str
    environment: str  # "test_mode" | "live_mode"
    base_url: str
