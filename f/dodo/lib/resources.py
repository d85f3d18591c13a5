"""Windmill resource types the bundle's entry scripts take, as TypedDicts.

Windmill infers a resource input from the annotation's name alone
(`db: postgresql` -> `format: resource-postgresql`, windmill-parser-py), so the
entry scripts import these instead of each declaring its own copy.
"""

from typing import Any, Literal, TypedDict


def configured(value: Any) -> Any:
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


class postgresql(TypedDict, total=False):
    host: str
    port: int
    user: str
    password: str
    dbname: str
    sslmode: str
    root_certificate_pem: str


class mysql(TypedDict, total=False):
    """Windmill's hub type (windmilldocs docs/integrations/mysql.md, docs/meta/5_sql_quickstart)."""
    host: str
    port: int
    user: str
    password: str
    database: str
    ssl: bool


class hubspot(TypedDict):
    token: str


class slack(TypedDict):
    token: str


class smtp(TypedDict, total=False):
    host: str
    port: int
    user: str
    password: str


class dodo_twilio(TypedDict, total=False):
    accountSid: str
    token: str
    from_number: str
    messaging_service_sid: str


class dodo_payments(TypedDict, total=False):
    api_key: str
    environment: Literal["test_mode", "live_mode"]
    base_url: str
