"""The MySQL/MariaDB mirror: customers, payments, subscriptions and refunds, for merchants
whose application database is MySQL.

A scheduled batch (f/dodo/mysql_mirror) reads the Postgres inbox's processed deliveries
after a cursor and applies each one here with Postgres's guarantees (f/dodo/lib/store.py,
migration v002):

- exactly once: each webhook id is inserted into `dodo_mirror_deliveries` in the same
  transaction as its writes; a webhook id already there changes nothing;
- newer wins: an entity row takes an event's state only when
  `(event_at, event_webhook_id) <= (new event's time, new webhook id)` (ties resolve the same
  in any arrival order; ids compare as binary utf8mb4, i.e. by code point);
- refunds: a payment's `refunded_minor` is the sum of its succeeded refunds (a locking
  read, so two concurrent refunds of one payment cannot both miss each other), and
  `refunded`/`net` follow in exact major units.

Money is BIGINT minor units plus exact DECIMAL major units (never float); text is
utf8mb4, stored verbatim except lone surrogates (not encodable in UTF-8) -> U+FFFD.
The rows come from the same `store.build_call` the Postgres record step uses, so both
databases hold the same columns for the same event.

Writes use `INSERT ... ON DUPLICATE KEY UPDATE col = IF(newer, VALUES(col), col)`
(VALUES() rather than MySQL 8's row alias: MariaDB has no row alias). MySQL applies the
assignments left to right, each seeing the ones before, so `event_webhook_id` is assigned
before `event_at` (see `_upsert`).
"""
from __future__ import annotations

import json
import re
import ssl
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import pymysql  # only the mirror's scheduled job imports this module (never the entry flow)

from f.dodo.lib import store
from f.dodo.lib.errors import ConfigError
from f.dodo.lib.normalizer import normalize_event

RESOURCE_PATH = "f/dodo/mysql"
CA_VARIABLE = "f/dodo/mysql_ca_cert"  # optional: the CA (PEM) that verifies the server's certificate
CURSOR_NAME = "inbox"
_RETRY_ERRNOS = (1213, 1205)  # deadlock, lock wait timeout: the whole page again
_KEY = "VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
_MONEY = "DECIMAL(24,4)"
_STATE = f"""event_type VARCHAR(255) NOT NULL,
    event_at DATETIME(6) NOT NULL,
    event_webhook_id {_KEY} NOT NULL,
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)"""
_TABLE_OPTS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"

DDL = [f"""CREATE TABLE IF NOT EXISTS dodo_customers (
    customer_id {_KEY} PRIMARY KEY, business_id {_KEY}, email TEXT, name TEXT, phone_number TEXT,
    metadata LONGTEXT, first_seen_at DATETIME(6) NOT NULL, event_at DATETIME(6),
    event_webhook_id {_KEY},
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
) {_TABLE_OPTS}""",
       f"""CREATE TABLE IF NOT EXISTS dodo_payments (
    payment_id {_KEY} PRIMARY KEY, business_id {_KEY}, customer_id {_KEY}, subscription_id {_KEY},
    status VARCHAR(64), currency CHAR(3), total_minor BIGINT, total {_MONEY}, tax_minor BIGINT, tax {_MONEY},
    settlement_currency CHAR(3), settlement_minor BIGINT, settlement {_MONEY}, payment_method VARCHAR(255),
    payment_method_type VARCHAR(255), card_last_four VARCHAR(16), card_network VARCHAR(64),
    error_code VARCHAR(255), error_message TEXT, created_at DATETIME(6),
    minor_unit DECIMAL(10,4), refunded_minor BIGINT NOT NULL DEFAULT 0, refunded {_MONEY}, net {_MONEY},
    {_STATE}, KEY dodo_payments_customer (customer_id)
) {_TABLE_OPTS}""",
       f"""CREATE TABLE IF NOT EXISTS dodo_refunds (
    refund_id {_KEY} PRIMARY KEY, payment_id {_KEY} NOT NULL, business_id {_KEY}, customer_id {_KEY},
    status VARCHAR(64), currency CHAR(3), amount_minor BIGINT, amount {_MONEY}, is_partial BOOLEAN,
    reason TEXT, created_at DATETIME(6),
    {_STATE}, KEY dodo_refunds_payment (payment_id, status)
) {_TABLE_OPTS}""",
       f"""CREATE TABLE IF NOT EXISTS dodo_subscriptions (
    subscription_id {_KEY} PRIMARY KEY, business_id {_KEY}, customer_id {_KEY}, product_id {_KEY},
    status VARCHAR(64), currency CHAR(3), recurring_pre_tax_minor BIGINT, recurring_pre_tax {_MONEY},
    quantity INT, payment_frequency_count INT, payment_frequency_interval VARCHAR(32),
    subscription_period_count INT, subscription_period_interval VARCHAR(32), trial_period_days INT,
    next_billing_date DATETIME(6), previous_billing_date DATETIME(6), cancel_at_next_billing_date BOOLEAN,
    cancelled_at DATETIME(6), created_at DATETIME(6),
    {_STATE}, KEY dodo_subscriptions_customer (customer_id)
) {_TABLE_OPTS}""",
       f"""CREATE TABLE IF NOT EXISTS dodo_mirror_deliveries (
    webhook_id {_KEY} PRIMARY KEY, event_type VARCHAR(255) NOT NULL, occurred_at DATETIME(6),
    outcome VARCHAR(16) NOT NULL, error TEXT,
    mirrored_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) {_TABLE_OPTS}""",
       f"""CREATE TABLE IF NOT EXISTS dodo_mirror_cursor (
    name VARCHAR(64) PRIMARY KEY, processed_at DATETIME(6) NOT NULL, webhook_id {_KEY} NOT NULL
) {_TABLE_OPTS}"""]

# Columns an event's state sets, per mirrored table (the key first); the names are
# store.build_call's row keys, so one builder feeds both databases.
COLUMNS = {
    "payments": ["payment_id", "business_id", "customer_id", "subscription_id", "status", "currency",
                 "total_minor", "total", "tax_minor", "tax", "settlement_currency", "settlement_minor",
                 "settlement", "payment_method", "payment_method_type", "card_last_four", "card_network",
                 "error_code", "error_message", "created_at", "minor_unit"],
    "refunds": ["refund_id", "payment_id", "business_id", "customer_id", "status", "currency", "amount_minor",
                "amount", "is_partial", "reason", "created_at"],
    "subscriptions": ["subscription_id", "business_id", "customer_id", "product_id", "status", "currency",
                      "recurring_pre_tax_minor", "recurring_pre_tax", "quantity", "payment_frequency_count",
                      "payment_frequency_interval", "subscription_period_count", "subscription_period_interval",
                      "trial_period_days", "next_billing_date", "previous_billing_date",
                      "cancel_at_next_billing_date", "cancelled_at", "created_at"],
}
_TIMES = {"created_at", "next_billing_date", "previous_billing_date", "cancelled_at"}
_CUSTOMER = ["customer_id", "business_id", "email", "name", "phone_number", "metadata"]


def _newer(guard_null: bool = False) -> str:
    test = "(event_at, event_webhook_id) <= (VALUES(event_at), VALUES(event_webhook_id))"
    return f"(event_at IS NULL OR {test})" if guard_null else test


def _assign(cols: Iterable[str], newer: str) -> list[str]:
    return [f"{c} = IF({newer}, VALUES({c}), {c})" for c in cols]


def _upsert(table: str, cols: list[str], state: list[str], *, extra: list[str] = (), guard_null: bool = False) -> str:
    """INSERT ... ON DUPLICATE KEY UPDATE that keeps the newer event's state. Each IF reads
    the row as the assignments before it left it: the data columns test the old guards;
    event_webhook_id goes before event_at, whose test then reads (old time, new id) <=
    (new time, new id), true exactly when the event was newer. The other order would
    leave a newer event's time beside an older event's id (wrong tie-breaks later)."""
    newer = _newer(guard_null)
    names = cols + state
    sets = list(extra) + _assign(cols[1:] + ["event_type"] * ("event_type" in state), newer) \
        + _assign(["event_webhook_id", "event_at"], newer)
    return (f"INSERT INTO dodo_{table} ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))}) "
            f"ON DUPLICATE KEY UPDATE {', '.join(sets)}")


_UPSERT = {t: _upsert(t, cols, ["event_type", "event_at", "event_webhook_id"]) for t, cols in COLUMNS.items()}
_UPSERT_CUSTOMER = _upsert("customers", _CUSTOMER, ["first_seen_at", "event_at", "event_webhook_id"],
                           extra=["first_seen_at = LEAST(first_seen_at, VALUES(first_seen_at))"], guard_null=True)
_CUSTOMER_REF = ("INSERT INTO dodo_customers (customer_id, business_id, first_seen_at) VALUES (%s, %s, %s) "
                 "ON DUPLICATE KEY UPDATE first_seen_at = LEAST(first_seen_at, VALUES(first_seen_at))")
_CLAIM = ("INSERT INTO dodo_mirror_deliveries (webhook_id, event_type, occurred_at, outcome, error) "
          "VALUES (%s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE webhook_id = webhook_id")
# A locking read: it sees (and waits for) refunds other transactions wrote, not a snapshot.
_REFUNDED = ("SELECT COALESCE(SUM(amount_minor), 0) FROM dodo_refunds "
             "WHERE payment_id = %s AND status = 'succeeded' FOR UPDATE")
_SET_REFUNDED = ("UPDATE dodo_payments SET refunded_minor = %s, refunded = %s * minor_unit, "
                 "net = (total_minor - %s) * minor_unit WHERE payment_id = %s")


# -- values: exact, UTC, encodable ------------------------------------------------------
_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: Any) -> Any:
    """utf8mb4 holds every code point but lone surrogates (JSON `\\ud800` decodes to one)."""
    return _SURROGATE.sub("\ufffd", value) if isinstance(value, str) else value


def _utc(value: str | None) -> datetime | None:
    """An ISO 8601 time as the naive UTC DATETIME(6) the mirror stores (time_zone '+00:00')."""
    if value is None:
        return None
    at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (at.astimezone(timezone.utc) if at.tzinfo else at).replace(tzinfo=None)


def _value(col: str, row: dict) -> Any:
    v = row.get(col)
    if col in _TIMES:
        return _utc(v)
    return _text(v)


# -- one event -------------------------------------------------------------------------
MIRRORED = {"payments", "refunds", "subscriptions"}


def apply_call(cur, call: dict) -> str:
    """Apply one store.build_call result inside the caller's transaction. Returns
    "applied" (written, or older than the rows it would touch), "duplicate" (its
    webhook id was mirrored before: nothing written), "skipped" (nothing to mirror) or
    "rejected" (a value the columns cannot hold: recorded with MySQL's reason in
    dodo_mirror_deliveries, the page goes on). Ids fit: the normaliser allows 255
    characters, the id columns' size."""
    table = call.get("table")
    if call.get("error") or call.get("test") or table not in MIRRORED:  # the batch reads these only
        return "skipped"
    wid, at = _text(call["webhook_id"]), _utc(call["occurred_at"])
    cur.execute(_CLAIM, [wid, _text(call["event_type"])[:255], at, "applied", None])
    if cur.rowcount == 0:
        return "duplicate"
    cur.execute("SAVEPOINT dodo_event")
    try:
        _write(cur, call, wid, at)
    except pymysql.err.DataError as exc:  # a value the columns cannot hold: this event only
        cur.execute("ROLLBACK TO SAVEPOINT dodo_event")
        cur.execute("UPDATE dodo_mirror_deliveries SET outcome = 'rejected', error = %s WHERE webhook_id = %s",
                    [f"{exc.args[-1]} (MySQL error {exc.args[0]})"[:2000], wid])
        return "rejected"
    return "applied"


def _write(cur, call: dict, wid: str, at: datetime) -> None:
    table = call["table"]
    state = [_text(call["event_type"]), at, wid]
    customer = call.get("customer")
    if customer:
        values = [_text(customer.get(c)) for c in _CUSTOMER]
        values[1] = _text(call.get("business_id"))
        meta = customer.get("metadata")
        values[5] = None if meta is None else _text(json.dumps(meta, ensure_ascii=False, sort_keys=True))
        cur.execute(_UPSERT_CUSTOMER, values + [at, at, wid])
    elif call.get("customer_ref"):
        cur.execute(_CUSTOMER_REF, [_text(call["customer_ref"]), _text(call.get("business_id")), at])
    row = dict(call["row"], minor_unit=call.get("unit"))
    cur.execute(_UPSERT[table], [_value(c, row) for c in COLUMNS[table]] + state)
    if table in ("payments", "refunds"):
        _refresh_refunded(cur, row["payment_id"])


def _refresh_refunded(cur, payment_id: str) -> None:
    cur.execute(_REFUNDED, [payment_id])
    minor = int(cur.fetchone()[0])
    cur.execute(_SET_REFUNDED, [minor, minor, minor, payment_id])


def mirror_event(conn, event: dict) -> str:
    """One normalised event in its own transaction (retried on deadlock)."""
    call = store.build_call(event)
    return _in_transaction(conn, lambda cur: apply_call(cur, call))


def _in_transaction(conn, work, tries: int = 5):
    for attempt in range(tries):
        try:
            conn.begin()
            with conn.cursor() as cur:
                result = work(cur)
            conn.commit()
            return result
        except pymysql.err.OperationalError as exc:
            _rollback(conn)
            if exc.args[0] not in _RETRY_ERRNOS or attempt == tries - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
        except BaseException:
            _rollback(conn)
            raise
    raise AssertionError("unreachable")


def _rollback(conn) -> None:
    """Roll back if the connection still can: a lost one (the server went away) has
    nothing to roll back, and its error must not hide the one that ended the work."""
    if conn.open:
        try:
            conn.rollback()
        except pymysql.err.Error:
            pass


# -- connection ------------------------------------------------------------------------
def tls(resource: dict, ca_cert: str | None = None) -> tuple[ssl.SSLContext | None, str]:
    """(TLS context or None, what it does) for the resource's `ssl` and the optional CA:
    `ssl: true` requires TLS (PyMySQL refuses a server that does not offer it).

    Windmill's `mysql` resource type has no CA field, and Windmill's own MySQL scripts
    encrypt `ssl: true` connections without checking the certificate
    (backend/windmill-worker/src/mysql_executor.rs@75a13bf4 do_mysql:
    with_danger_accept_invalid_certs). The mirror does the same unless the workspace holds
    the CA (PEM) in the variable f/dodo/mysql_ca_cert: then the certificate must chain to
    it and carry the resource's host name, as a browser checks (VERIFY_X509_STRICT off,
    as PyMySQL does: MySQL's self-made certificates lack the extensions it wants)."""
    if not resource.get("ssl"):  # PyMySQL's default: TLS when the server offers it, unchecked, else plain
        return None, "preferred: encrypted if the server offers it, certificate not verified (set ssl to require it)"
    if not ca_cert:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        return ctx, f"encrypted, certificate not verified (set the variable {CA_VARIABLE} to verify it)"
    try:
        ctx = ssl.create_default_context(cadata=ca_cert)
    except (ssl.SSLError, ValueError):
        raise ConfigError(CA_VARIABLE, "it holds no PEM certificate",
                          "paste the CA certificate (-----BEGIN CERTIFICATE----- ...) that signed the "
                          "MySQL server's certificate") from None
    ctx.verify_flags &= ~ssl.VERIFY_X509_STRICT
    return ctx, "verified"


def connect(resource: dict, ca_cert: str | None = None):
    """A PyMySQL connection from Windmill's `mysql` resource {host, port, user, password,
    database, ssl} (`ca_cert`: see `tls`): utf8mb4, UTC, strict, READ COMMITTED, the
    mirror's tables created."""
    missing = [k for k in ("host", "user", "database") if not resource.get(k)]
    if missing:
        raise ConfigError(RESOURCE_PATH, f"the mysql resource lacks {', '.join(missing)}",
                          "edit it in Windmill (Resources) to set them")
    context, _ = tls(resource, ca_cert)
    ssl_arg = {"ssl": context} if context else {}
    try:
        conn = pymysql.connect(host=resource["host"], port=int(resource.get("port") or 3306),
                               user=resource["user"], password=resource.get("password") or "",
                               database=resource["database"], charset="utf8mb4", autocommit=True,
                               connect_timeout=10, init_command=(
                                   "SET time_zone = '+00:00', sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,"
                                   "NO_ENGINE_SUBSTITUTION'"),
                               **ssl_arg)
    except pymysql.err.OperationalError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc.args[-1]):
            raise ConfigError(RESOURCE_PATH, f"the MySQL server's certificate failed verification "
                              f"({exc.args[-1]})", f"set {CA_VARIABLE} to the CA that signed it, and the "
                              "resource's host to a name the certificate carries") from None
        raise ConfigError(RESOURCE_PATH, f"cannot connect to MySQL at {resource['host']}:"
                          f"{resource.get('port') or 3306} ({exc.args[-1]})",
                          "check the resource's host, port, user, password and database, and that the "
                          "server accepts connections from Windmill's workers") from None
    with conn.cursor() as cur:
        # its own statement: the variable is tx_isolation on MariaDB, transaction_isolation on MySQL 8
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        for statement in DDL:
            cur.execute(statement)
    return conn


# -- the batch from the Postgres inbox -----------------------------------------------------
_PAGE = """SELECT webhook_id, payload, processed_at FROM webhook_events
 WHERE status = 'processed' AND category IN ('payment', 'refund', 'subscription')
   AND (processed_at, webhook_id) > (%s, %s)
 ORDER BY processed_at, webhook_id LIMIT %s"""


def _cursor(cur) -> tuple[datetime, str] | None:
    cur.execute("SELECT processed_at, webhook_id FROM dodo_mirror_cursor WHERE name = %s", [CURSOR_NAME])
    got = cur.fetchone()
    return (got[0].replace(tzinfo=timezone.utc), got[1]) if got else None


def mirror_batch(pg, my, *, page: int = 500, overlap: timedelta = timedelta(minutes=10),
                 max_pages: int = 1000) -> dict:
    """Mirror the inbox's processed deliveries after the cursor, a page per transaction
    (its writes, its deliveries and the cursor commit together).

    Each run starts `overlap` before the cursor: an inbox transaction that took its
    processed_at before another's but committed after it is still read (its delivery
    id makes the re-read of the others a no-op)."""
    with my.cursor() as cur:
        saved = _cursor(cur)
    after = (saved[0] - overlap, "") if saved else (datetime(1970, 1, 1, tzinfo=timezone.utc), "")
    counts = {"applied": 0, "duplicate": 0, "skipped": 0, "rejected": 0}
    pages = 0
    while pages < max_pages:
        rows = pg.execute(_PAGE, [after[0], after[1], page]).fetchall()
        if not rows:
            break
        calls = [store.build_call(normalize_event(payload, wid)) for wid, payload, _ in rows]
        last = rows[-1]

        def work(cur, calls=calls, last=last):
            outcomes = [apply_call(cur, call) for call in calls]
            # webhook_id first: its test must see the old processed_at (see _upsert)
            cur.execute("INSERT INTO dodo_mirror_cursor (name, processed_at, webhook_id) VALUES (%s, %s, %s) "
                        "ON DUPLICATE KEY UPDATE webhook_id = IF((processed_at, webhook_id) < "
                        "(VALUES(processed_at), VALUES(webhook_id)), VALUES(webhook_id), webhook_id), "
                        "processed_at = GREATEST(processed_at, VALUES(processed_at))",
                        [CURSOR_NAME, _utc(last[2].isoformat()), last[0]])
            return outcomes

        for outcome in _in_transaction(my, work):
            counts[outcome] += 1
        after = (last[2], last[0])
        pages += 1
    with my.cursor() as cur:
        now = _cursor(cur)
    return dict(counts, pages=pages, cursor=None if now is None else {"processed_at": now[0].isoformat(),
                                                                       "webhook_id": now[1]})
