"""Windmill resource types the bundle's entry scripts take, as TypedDicts.

Windmill infers a resource input from the annotation's name alone
(`db: postgresql` -> `format: resource-postgresql`, windmill-parser-py), so the
entry scripts import these instead of each declaring its own copy.
"""

from typing import Literal, TypedDict


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
