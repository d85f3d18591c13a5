"""Reconciliation with the Dodo API: record what webhooks missed, report drift.

For payments, subscriptions, refunds and disputes: list the objects created since the
cursor (minus a look-back window, since an old object can still change state), compare
each with what Postgres holds, fetch the full object of every one that is missing or
different, and record it through the same code as a webhook
(`store.record_delivery`: `normalize_event` + `record_event`) as a synthetic event:

- `type` is `<family>.<status>` (`payment.succeeded`, `dispute.won`, `refund.pending`),
  so the store's per-type rules apply and users' SQL can tell it apart by webhook_id;
- `timestamp` is the start of the run, before any object is fetched: the API returns
  the latest state, so the store's event-time guard lets it replace older webhook state
  but never the state of a webhook whose event happened after the run began;
- `webhook_id` is `reconcile:<family>:<id>:<content hash>`: a rerun that sees the same
  state dedupes in the inbox instead of recording it twice (a state that comes back,
  A -> B -> A, is recorded again under `...@<run start>`).

Listing pages through `page_number`/`page_size` by hand: the SDK's auto-pager computes
the next page as `(page_number or 1) + 1`, which skips page 1 of Dodo's 0-based pages.
`page_number` is capped (dodopayments 1.123.0 types/payment_list_params.py: "Capped to
bound OFFSET-based deep pagination"; the cap is not published), so no listing pages
deep: it walks `created_at` windows (`created_at_gte`/`created_at_lte`, inclusive, on
every list endpoint's params) of at most MAX_PAGES pages each, and splits a window in
two when it is that full. Every loop is bounded (MAX_REQUESTS a listing; a window
narrower than a millisecond that is still full is an error, not a loop).
The raw JSON (`with_raw_response`) is recorded, not the SDK models, so fields newer than
the SDK are kept, as they are for webhooks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

from dodopayments import DodoPayments

from f.dodo.lib import db
from f.dodo.lib.store import record_delivery

PAGE_SIZE = 100  # the API's maximum
MAX_PAGES = 5  # pages read in one created_at window before it is split: page_number stays under the cap
MAX_REQUESTS = 10_000  # list requests in one listing: a bound, never reached in practice
FLOOR = datetime(2020, 1, 1, tzinfo=timezone.utc)  # before Dodo Payments' first object: "everything"
AHEAD = timedelta(days=1)  # a listing's window ends this far past the run's start (clock skew)


class ListingError(RuntimeError):
    """A listing cannot be completed within the API's page cap and this module's bounds."""


@dataclass(frozen=True)
class Family:
    kind: str  # API collection and client attribute: "payments"
    name: str  # event-type prefix: "payment"
    id_key: str  # "payment_id"
    status_key: str  # "status" or "dispute_status"

    def event_type(self, obj: dict) -> str:
        status = str(obj.get(self.status_key) or "updated").lower()
        return f"{self.name}.{status.removeprefix('dispute_')}"


FAMILIES = (
    Family("payments", "payment", "payment_id", "status"),
    Family("subscriptions", "subscription", "subscription_id", "status"),
    Family("refunds", "refund", "refund_id", "status"),
    Family("disputes", "dispute", "dispute_id", "dispute_status"),
)
BY_KIND = {f.kind: f for f in FAMILIES}


def client_from_resource(resource: dict, **kwargs: Any) -> DodoPayments:
    """An SDK client from a `dodo_payments` resource {api_key, environment, base_url?}."""
    if not resource or not resource.get("api_key"):
        raise ValueError("the dodo_payments resource has no api_key")
    opts: dict[str, Any] = {"bearer_token": resource["api_key"]}
    if resource.get("base_url"):
        opts["base_url"] = resource["base_url"]
    else:
        env = resource.get("environment") or "test_mode"
        if env not in ("test_mode", "live_mode"):
            raise ValueError("environment must be test_mode or live_mode")
        opts["environment"] = env
    return DodoPayments(**opts, **kwargs)


def list_objects(client: DodoPayments, family: Family, since: datetime | None,
                 until: datetime | None = None) -> Iterator[dict]:
    """Every object of `family` created in [since, until] (None: from FLOOR; to now plus
    AHEAD), each once, as raw JSON, walking created_at windows (module docstring)."""
    api = getattr(client.with_raw_response, family.kind)
    windows = [(since or FLOOR, until or datetime.now(timezone.utc) + AHEAD)]
    seen: set[str] = set()
    requests = 0
    while windows:
        low, high = windows.pop()
        for page in range(MAX_PAGES):
            requests += 1
            if requests > MAX_REQUESTS:
                raise ListingError(f"listing {family.kind} took more than {MAX_REQUESTS} requests")
            items = api.list(page_number=page, page_size=PAGE_SIZE, created_at_gte=low,
                             created_at_lte=high).json().get("items") or []
            for item in items:
                if item[family.id_key] not in seen:
                    seen.add(item[family.id_key])
                    yield item
            if len(items) < PAGE_SIZE:
                break
        else:  # MAX_PAGES full pages: more may follow, beyond what page_number may reach
            windows += _halves(family, low, high)


def _halves(family: Family, low: datetime, high: datetime) -> list[tuple[datetime, datetime]]:
    """The two halves of a full window (inclusive bounds: the middle instant is in both)."""
    if high - low < timedelta(milliseconds=1):
        raise ListingError(f"more than {MAX_PAGES * PAGE_SIZE} {family.kind} were created within one "
                           f"millisecond ({low.isoformat()} to {high.isoformat()}): the API's page cap "
                           "does not let them be listed")
    middle = low + (high - low) / 2
    return [(middle, high), (low, middle)]


def fetch_object(client: DodoPayments, family: Family, object_id: str) -> dict:
    """The full object (a list item is a summary: no tax, settlement or cart fields)."""
    return getattr(client.with_raw_response, family.kind).retrieve(object_id).json()


def synthetic_event(family: Family, obj: dict, fetched_at: datetime, business_id: str | None) -> tuple[str, dict]:
    """(webhook_id, envelope) recording `obj` as Dodo's webhook for its state would."""
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
    webhook_id = f"reconcile:{family.name}:{obj[family.id_key]}:{digest}"
    envelope = {
        "business_id": obj.get("business_id") or business_id,
        "type": family.event_type(obj),
        "timestamp": fetched_at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
        "data": obj,
    }
    return webhook_id, envelope


def differences(api_item: dict, stored: dict | None) -> list[str]:
    """Keys of the API's list item whose value Postgres holds differently ([] = in sync).

    Only keys present on both sides are compared (a list item is a summary; the stored
    object may come from an older API version); timestamps compare as instants.
    """
    if stored is None:
        return ["(missing)"]
    return sorted(k for k, v in api_item.items() if k in stored and not _same(v, stored[k]))


def _same(a: Any, b: Any) -> bool:
    if a == b:
        return True
    if isinstance(a, str) and isinstance(b, str):
        ta, tb = _instant(a), _instant(b)
        return ta is not None and ta == tb
    if isinstance(a, dict) and isinstance(b, dict):
        return all(k not in b or _same(v, b[k]) for k, v in a.items())
    if isinstance(a, (int, str)) and isinstance(b, (int, str)) and not isinstance(a, bool):
        return str(a) == str(b)  # Dodo sends some amounts as strings, some as numbers
    return False


def _instant(text: str) -> datetime | None:
    if len(text) < 19 or text[4] != "-" or text[10] not in "T ":
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def window_start(cursor: datetime | None, lookback_days: int) -> datetime | None:
    """Where this run's listing starts: the cursor minus the look-back (None: everything)."""
    return None if cursor is None else cursor - timedelta(days=lookback_days)


# --- Postgres side (conn from f.dodo.lib.db.connect: search_path is the bundle's schema) ---


def read_cursor(conn, kind: str) -> datetime | None:
    row = conn.execute("SELECT cursor_at FROM reconcile_cursor WHERE kind = %s", [kind]).fetchone()
    return row[0] if row else None


def write_cursor(conn, kind: str, at: datetime, result: dict) -> None:
    conn.execute(
        """INSERT INTO reconcile_cursor (kind, cursor_at, last_run_at, last_result) VALUES (%s, %s, now(), %s)
           ON CONFLICT (kind) DO UPDATE SET cursor_at = excluded.cursor_at, last_run_at = now(),
                                            last_result = excluded.last_result""",
        [kind, at, db.Json(result)],
    )


def stored_objects(conn, family: Family, ids: list[str]) -> dict[str, dict]:
    """id -> the raw object Postgres holds for it (the `data` of the event it last applied)."""
    if not ids:
        return {}
    rows = conn.execute(
        f"SELECT {family.id_key}, data FROM {family.kind} WHERE {family.id_key} = ANY(%s)", [ids]
    ).fetchall()
    return {i: d for i, d in rows}


# --- the run ---------------------------------------------------------------------------


def reconcile(
    conn,
    client: DodoPayments,
    *,
    kinds: tuple[str, ...] = tuple(BY_KIND),
    lookback_days: int = 7,
    full: bool = False,
    full_kinds: tuple[str, ...] = ("subscriptions",),
    dry_run: bool = False,
    now: datetime | None = None,
    on_recorded: Callable[[str, dict], str] | None = None,
) -> dict:
    """One reconciliation; returns {"summary": [...], "drift": [...]} (rows for tables).

    `full` lists everything; `full_kinds` are listed in full on every run (a
    subscription changes state for its whole life, long after its creation date).
    `dry_run` records nothing and keeps the cursors. `on_recorded(webhook_id, envelope)`
    runs for each synthetic event that changed Postgres (f/dodo/lib/heal.py: the CRM and
    notification sinks, once per event through the ledger); its text joins the action.
    """
    started = now or datetime.now(timezone.utc)
    summary, drift = [], []
    for kind in kinds:
        family = BY_KIND[kind]
        since = None if (full or kind in full_kinds) else window_start(read_cursor(conn, kind), lookback_days)
        items = list(list_objects(client, family, since, max(started, datetime.now(timezone.utc)) + AHEAD))
        stored = stored_objects(conn, family, [i[family.id_key] for i in items])
        counts = {"kind": kind, "since": since.isoformat() if since else "all", "listed": len(items),
                  "missing": 0, "different": 0, "recorded": 0, "kept_newer": 0, "duplicate": 0, "failed": 0}
        for item in items:
            oid = item[family.id_key]
            diff = differences(item, stored.get(oid))
            if not diff:
                continue
            missing = oid not in stored
            counts["missing" if missing else "different"] += 1
            action = "would record" if dry_run else _record(conn, client, family, oid, started, counts,
                                                               on_recorded)
            drift.append({
                "kind": kind, "id": oid, "drift": "missing" if missing else "different",
                "fields": "" if missing else ", ".join(diff),
                "postgres": "" if missing else str(stored[oid].get(family.status_key)),
                "dodo": str(item.get(family.status_key)), "action": action,
            })
        if not dry_run and counts["failed"] == 0:
            write_cursor(conn, kind, started, counts)
        summary.append(counts)
    return {"summary": summary, "drift": drift}


def _record(conn, client: DodoPayments, family: Family, oid: str, started: datetime, counts: dict,
            on_recorded: Callable[[str, dict], str] | None = None) -> str:
    obj = fetch_object(client, family, oid)
    webhook_id, envelope = synthetic_event(family, obj, started, None)
    result = record_delivery(conn, envelope, webhook_id)
    if result["status"] == "duplicate":
        # This state was reconciled before, yet Postgres differs: it went A -> B -> A and the
        # event back to A was lost. Record it again under this run's own id.
        webhook_id = f"{webhook_id}@{int(started.timestamp())}"
        result = record_delivery(conn, envelope, webhook_id)
    if result["status"] == "failed":
        counts["failed"] += 1
        return "failed: " + str(result.get("error", ""))[:200]
    if result["status"] == "duplicate":  # recorded by an earlier run at this very start time
        counts["duplicate"] += 1
        return "already recorded"
    if not result.get("applied"):  # Postgres holds a newer webhook's state: it stays
        counts["kept_newer"] += 1
        return "kept newer state"
    counts["recorded"] += 1
    return "recorded" + (f"; {on_recorded(webhook_id, envelope)}" if on_recorded else "")


def rich_result(result: dict) -> dict:
    """Windmill rich result: a markdown summary and the drift table."""
    keys = ["kind", "since", "listed", "missing", "different", "recorded", "kept_newer", "duplicate", "failed"]
    lines = ["| " + " | ".join(k.replace("_", " ") for k in keys) + " |", "|---|---|" + "---:|" * (len(keys) - 2)]
    lines += ["| " + " | ".join(str(c[k]) for k in keys) + " |" for c in result["summary"]]
    parts = [{"markdown": "### Reconciliation with the Dodo API\n\n" + "\n".join(lines)}]
    if result["drift"]:
        parts.append({"table-row-object": result["drift"]})
    else:
        parts.append({"markdown": "No drift: Postgres matches the Dodo API."})
    return {"render_all": parts}
